"""Label feedback's error totals for a regressor, checked before anything is counted.

A regressor's monitor keeps running sums of |prediction - label| and (prediction - label)^2;
one feedback must never make them non-finite, so every quantity they are made of is computed in
float64 and checked first, and a feedback that fails is refused (422) with nothing counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from flywheel_serving.errors import Unprocessable


def error_sums(predicted: Sequence[Any], actual: Sequence[Any]) -> tuple[float, float]:
    """The sums of |prediction - label| and (prediction - label)^2 of one feedback, in float64;
    Unprocessable when any of them, or anything they are made of, is not finite."""
    try:
        given = np.asarray(predicted, dtype=np.float64)
        truth = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError, OverflowError) as error:
        raise Unprocessable(
            "a regressor's predictions and labels must be finite numbers"
        ) from error
    if given.shape != (len(predicted),) or truth.shape != given.shape:
        raise Unprocessable("a regressor's predictions and labels must be numbers, one per item")
    with np.errstate(over="ignore", invalid="ignore"):
        difference = given - truth
        absolute = np.abs(difference)
        squared = difference * difference
        sums = np.array([absolute.sum(), squared.sum()])
    for name, array in (("prediction", given), ("label", truth)):
        if not np.isfinite(array).all():
            item = int(np.flatnonzero(~np.isfinite(array))[0])
            raise Unprocessable(f"item {item}: the {name} {array[item]!r} is not a finite number")
    for quantity, array in (
        ("prediction - label", difference),
        ("|prediction - label|", absolute),
        ("(prediction - label)^2", squared),
    ):
        if not np.isfinite(array).all():
            item = int(np.flatnonzero(~np.isfinite(array))[0])
            raise Unprocessable(
                f"item {item}: {quantity} for prediction {given[item]!r} and label "
                f"{truth[item]!r} overflows float64; feedback not counted"
            )
    if not np.isfinite(sums).all():
        raise Unprocessable(
            "the absolute or squared errors of this feedback sum beyond float64; "
            "feedback not counted"
        )
    return float(sums[0]), float(sums[1])
