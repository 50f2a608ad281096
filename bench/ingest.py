"""Ingest + validate + profile a 1,000,000-row x 20-column CSV, beside pandas describe() + numpy.

Usage:  .venv/bin/python bench/ingest.py [ROWS]
Each side runs in its own process so that wall time and peak memory (max RSS) are its own:
- flywheel: the ingest Job's whole path (read CSV, resolve schema, validate rules, content digest,
  statistics, Parquet snapshot + stats.json + schema.json published), i.e. flywheel.jobs.ingest;
- reference: pandas read_csv + describe(include="all") + a numpy histogram per numeric column
  (quantile edges, as ours) + value_counts per categorical column - statistics only, nothing
  validated, hashed or written.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

NUMERIC, CATEGORICAL = 16, 3


def make_csv(path: Path, rows: int) -> None:
    """Synthetic tabular data with a fixed seed: 16 numeric, 3 categorical, 1 label."""
    rng = np.random.default_rng(7)
    data: dict[str, np.ndarray[Any, Any]] = {
        f"n{i}": rng.normal(i, 1 + i / 10, rows).round(4) for i in range(NUMERIC)
    }
    for i in range(CATEGORICAL):
        data[f"c{i}"] = rng.choice([f"v{j}" for j in range(8 + 4 * i)], rows)
    data["label"] = rng.integers(0, 3, rows)
    pd.DataFrame(data).to_csv(path, index=False)


def run_flywheel(csv: Path, work: Path) -> None:
    """The ingest path, as the Job runs it."""
    from flywheel.api.dataset import DatasetSpec
    from flywheel.artifacts import ArtifactStore
    from flywheel.jobs.ingest import ingest

    spec = DatasetSpec.model_validate(
        {
            "source": {"uri": f"file://{csv}"},
            "validation": {
                "minRows": 1000,
                "maxNullFraction": 0.01,
                "rules": [
                    {"column": "n0", "min": -100, "max": 100},
                    {"column": "c0", "allowedValues": [f"v{j}" for j in range(8)]},
                ],
            },
        }
    )
    ingest(
        spec,
        namespace="bench",
        name="d",
        claim="c",
        store=ArtifactStore(work),
        previous_digest=None,
    )


def run_reference(csv: Path) -> None:
    """What a user would compute by hand with pandas and numpy."""
    frame = pd.read_csv(csv)
    frame.describe(include="all")
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values):
            edges = np.unique(np.quantile(values.dropna(), np.linspace(0, 1, 11)))
            np.histogram(values.dropna(), bins=edges)
        else:
            values.value_counts()


def child(which: str, csv: Path, work: Path) -> None:
    """Run one side and print its figures as JSON."""
    start = time.perf_counter()
    if which == "flywheel":
        run_flywheel(csv, work)
    else:
        run_reference(csv)
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "peak_mib": peak_mib}))


def main() -> int:
    """Generate the data once, run both sides, print them side by side."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4]))
        return 0
    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    with tempfile.TemporaryDirectory() as scratch:
        csv = Path(scratch) / "data.csv"
        make_csv(csv, rows)
        size = csv.stat().st_size / 2**20
        results = {}
        for which in ("reference", "flywheel"):
            out = subprocess.run(
                [sys.executable, __file__, "--child", which, str(csv), scratch],
                capture_output=True,
                text=True,
                check=True,
            )
            results[which] = json.loads(out.stdout.strip().splitlines()[-1])
    print(f"{rows:,} rows x {NUMERIC + CATEGORICAL + 1} columns, CSV {size:.0f} MiB")
    print(f"{'':54} {'wall s':>8} {'peak MiB':>9}")
    for which, label in (
        ("flywheel", "flywheel ingest (read+validate+digest+stats+publish)"),
        ("reference", "pandas describe + numpy histograms"),
    ):
        r = results[which]
        print(f"{label:54} {r['seconds']:8.2f} {r['peak_mib']:9.0f}")
    f, p = results["flywheel"], results["reference"]
    print(
        f"ratio flywheel/reference: time {f['seconds'] / p['seconds']:.2f}x, "
        f"peak memory {f['peak_mib'] / p['peak_mib']:.2f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
