"""Peer worker: Evidently or NannyML on the benchmark's windows, run inside the peer's virtualenv.

Usage (by run.py):  <peer-venv>/bin/python bench/drift/peers.py --peer evidently|nannyml
                    --job job.json --out result.json

The job lists window specs (`streams.StreamSpec` fields); the worker rebuilds each window with
`streams.generate` (numpy only, same seeds, so no data files: run.py checks each window's digest
against its own) and writes, per window, the columns the peer flags (of the 20 features and the
predicted class, a categorical column) and the seconds of its run / calculate call. With
`timing` in the job it also runs each of those windows `loops` times.

- Evidently: `Report([DataDriftPreset()], include_tests=True).run(current, reference)`, all
  defaults: per column the method Evidently picks by type and reference size (above 1,000
  reference rows: normalised Wasserstein > 0.1 for numeric columns, Jensen-Shannon > 0.1 for
  categorical ones); a column is flagged when its "Value Drift" test fails.
- NannyML: `UnivariateDriftCalculator(column_names=...)` with its default methods (Jensen-Shannon
  for continuous and categorical columns) and default thresholds (mean + 3 standard deviations of
  the reference chunks' distances). Thresholds need several reference chunks: the calculator is
  fitted with chunks of the window's size when the reference holds at least 10 of them (500-row
  windows), else with NannyML's default chunker (10 chunks of 2,000 rows); each window is then
  one chunk (`SizeBasedChunker(rows)`); a column is flagged when its chunk has `alert` set.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd

from drift.streams import (
    CATEGORICAL,
    COLUMNS,
    NUMERIC,
    PREDICTION,
    StreamSpec,
    digest,
    generate,
    reference,
)

Decide = Callable[[pd.DataFrame], tuple[list[str], float]]


def frame(spec: StreamSpec) -> tuple[pd.DataFrame, str]:
    """A window as the DataFrame a user hands the peer (categoricals as str objects)."""
    data = generate(spec)
    columns: dict[str, Any] = {n: data.numeric[:, i] for i, n in enumerate(NUMERIC)}
    columns.update({n: data.categorical[n].astype(object) for n in CATEGORICAL})
    columns[PREDICTION] = data.prediction.astype(object)
    return pd.DataFrame(columns), digest(data)


def evidently_session(info: dict[str, Any]) -> Callable[[int], Decide]:
    """Evidently's DataDriftPreset with every default."""
    started = time.perf_counter()
    import evidently  # type: ignore[import-not-found]
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset  # type: ignore[import-not-found]

    info["import_s"] = time.perf_counter() - started
    info["version"] = evidently.__version__
    definition = DataDefinition(
        numerical_columns=NUMERIC, categorical_columns=[*CATEGORICAL, PREDICTION]
    )
    started = time.perf_counter()
    base = Dataset.from_pandas(frame(reference())[0], data_definition=definition)
    info["fit_s"] = time.perf_counter() - started  # no fit: the reference Dataset's creation
    methods: dict[str, str] = info.setdefault("methods", {})

    def decide(window: pd.DataFrame) -> tuple[list[str], float]:
        current = Dataset.from_pandas(window, data_definition=definition)
        report = Report([DataDriftPreset()], include_tests=True)
        started = time.perf_counter()
        snapshot = report.run(current, base)
        seconds = time.perf_counter() - started
        flagged = []
        for test in snapshot.dict()["tests"]:
            params = test["metric_config"]["params"]
            column = params.get("column")
            if column is None:
                continue
            methods[column] = f"{params['method']} (threshold {params['threshold']})"
            if str(getattr(test["status"], "value", test["status"])) == "FAIL":
                flagged.append(column)
        return flagged, seconds

    return lambda rows: decide


def nannyml_session(info: dict[str, Any]) -> Callable[[int], Decide]:
    """NannyML's univariate drift calculator with its default methods and thresholds."""
    os.environ["NML_DISABLE_USAGE_LOGGING"] = "1"
    started = time.perf_counter()
    import nannyml  # type: ignore[import-not-found]
    from nannyml.chunk import SizeBasedChunker  # type: ignore[import-not-found]

    info["import_s"] = time.perf_counter() - started
    info["version"] = nannyml.__version__
    base = frame(reference())[0]
    fitted: dict[int | None, Any] = {}
    info["fit_s"] = {}

    def calculator(rows: int) -> Decide:
        chunk = rows if len(base) // rows >= 10 else None
        label = str(chunk) if chunk else f"{len(base) // 10} (default chunker)"
        if chunk not in fitted:
            started = time.perf_counter()
            fitted[chunk] = nannyml.UnivariateDriftCalculator(
                column_names=COLUMNS, chunk_size=chunk
            ).fit(base)
            info["fit_s"][label] = time.perf_counter() - started
        calc = fitted[chunk]
        methods = info.setdefault("methods", {})
        methods["continuous"] = f"continuous: {', '.join(calc.continuous_method_names)}"
        methods["categorical"] = f"categorical: {', '.join(calc.categorical_method_names)}"
        thresholds = info.setdefault("thresholds", {})

        def decide(window: pd.DataFrame) -> tuple[list[str], float]:
            calc.chunker = SizeBasedChunker(chunk_size=len(window))
            started = time.perf_counter()
            result = calc.calculate(window)
            seconds = time.perf_counter() - started
            table = result.filter(period="analysis").to_df()
            if len(table) != 1:
                raise SystemExit(f"nannyml: {len(table)} chunks for one window")
            thresholds.setdefault(
                label,
                {
                    n: float(table[(n, "jensen_shannon", "upper_threshold")].iloc[0])
                    for n in COLUMNS
                },
            )
            flagged = [
                n
                for n in COLUMNS
                for method in ("jensen_shannon", "chi2", "l_infinity", "kolmogorov_smirnov")
                if (n, method, "alert") in table.columns
                and bool(table[(n, method, "alert")].iloc[0])
            ]
            return sorted(set(flagged), key=COLUMNS.index), seconds

        return decide

    return calculator


def main() -> int:
    """Run one job and write its JSON result."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--peer", choices=["evidently", "nannyml"], required=True)
    parser.add_argument("--job", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    job = json.loads(args.job.read_text())
    info: dict[str, Any] = {"peer": args.peer, "pandas": pd.__version__}
    session = evidently_session(info) if args.peer == "evidently" else nannyml_session(info)
    results = []
    for fields in job["specs"]:
        spec = StreamSpec(*fields)
        window, seen = frame(spec)
        flagged, seconds = session(spec.rows)(window)
        results.append({"spec": fields, "digest": seen, "flagged": flagged, "seconds": seconds})
    info["results"] = results
    timing = job.get("timing") or {"specs": [], "loops": 0}
    info["timing"] = []
    for fields in timing["specs"]:
        spec = StreamSpec(*fields)
        window, seen = frame(spec)
        decide = session(spec.rows)
        decide(window)  # warm-up
        runs = [decide(window)[1] for _ in range(timing["loops"])]
        info["timing"].append({"spec": fields, "digest": seen, "seconds": runs})
    args.out.write_text(json.dumps(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
