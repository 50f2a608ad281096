"""Kubernetes resource quantities (`500m`, `0.5Gi`, `1e3`, `128974848`) as numbers.

The grammar of k8s.io/apimachinery's resource.Quantity: a signed decimal number, then an
optional binary-SI suffix (Ki, Mi, Gi, Ti, Pi, Ei), decimal-SI suffix (n, u, m, k, M, G, T, P,
E) or decimal exponent (`e3`, `E-2`). The node rounds up as the kubelet does: memory to whole
bytes (`Value()`), CPU to whole millicores (`MilliValue()`).
"""

from __future__ import annotations

import re
from decimal import ROUND_CEILING, Decimal

_SUFFIXES = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_QUANTITY = re.compile(
    r"(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?:(?P<exponent>[eE][+-]?\d+)|(?P<suffix>[KMGTPE]i|[numkMGTPE]))?"
)


def quantity(text: str) -> Decimal:
    """A resource quantity as a number (`500m` -> 0.5, `1Gi` -> 1073741824); ValueError when
    the text is not a quantity."""
    found = _QUANTITY.fullmatch(str(text).strip())
    if found is None:
        raise ValueError(f"not a resource quantity: {text!r}")
    number = Decimal(found["number"])
    if found["exponent"]:
        return number.scaleb(int(found["exponent"][1:]))
    return number * _SUFFIXES[found["suffix"] or ""]


def memory_bytes(text: str) -> int:
    """A memory quantity in bytes, rounded up (`0.5Gi` -> 536870912)."""
    return int(quantity(text).to_integral_value(rounding=ROUND_CEILING))


def cpu_millis(text: str) -> int:
    """A CPU quantity in millicores, rounded up (`0.5` -> 500, `250m` -> 250)."""
    return int((quantity(text) * 1000).to_integral_value(rounding=ROUND_CEILING))
