"""The data and the two sides of bench/ingest.py.

The data: sizes (`100M`, `512Mi`), the synthetic CSVs and their cache in the work directory.
The sides, each run in a child process of its own (`ingest.py --child`): the flywheel ingest
Job's path, and pandas.read_csv plus the same statistics and digest by hand. Also how a side's
run ended (`Run`), which both the comparison table and the limited run report.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported where used: the bench's own process stays small (see ingest.run_side)
    import numpy as np
    import pandas as pd

NUMERIC, CATEGORICAL = 16, 3
SEED = 7
CHUNK_ROWS = 200_000
DATA_FORMAT = 1  # bump when make_csv changes what it writes, so that cached files are redone
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
BINS, TOP_K = 10, 20
SOURCE_MAX_BYTES = "64Gi"
ENTRY = Path(__file__).with_name("ingest.py")  # its main runs `--generate` and `--child`

UNITS = {
    "": 1,
    "K": 10**3,
    "M": 10**6,
    "G": 10**9,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
}


def parse_size(text: str) -> int:
    """Bytes of `100M`, `1G` (powers of 10) or `512Mi`, `2Gi` (powers of 2); `B` may follow."""
    body = text.strip().removesuffix("B")
    for unit in sorted(UNITS, key=len, reverse=True):
        if unit and body.endswith(unit):
            return int(float(body.removesuffix(unit)) * UNITS[unit])
    return int(body)


# --- data --------------------------------------------------------------------------------------


def chunk_frame(rng: np.random.Generator, rows: int) -> pd.DataFrame:
    """`rows` rows of the table: 16 numeric, 3 categorical, 1 integer label (3 classes)."""
    import pandas as pd

    data: dict[str, np.ndarray[Any, Any]] = {
        f"n{i}": rng.normal(i, 1 + i / 10, rows).round(4) for i in range(NUMERIC)
    }
    for i in range(CATEGORICAL):
        data[f"c{i}"] = rng.choice([f"v{j}" for j in range(8 + 4 * i)], rows)
    data["label"] = rng.integers(0, 3, rows)
    return pd.DataFrame(data)


def make_csv(path: Path, target: int) -> int:
    """Write at least `target` bytes of rows (fixed seed), a chunk at a time; the rows written."""
    import numpy as np

    rng = np.random.default_rng(SEED)
    rows, per_row = 0, 150.0  # bytes per row: a first guess, then measured
    with path.open("w", newline="") as out:
        while (written := out.tell()) < target:
            count = max(1, min(CHUNK_ROWS, math.ceil((target - written) / per_row)))
            chunk_frame(rng, count).to_csv(out, index=False, header=rows == 0)
            rows += count
            per_row = (out.tell() - written) / count
    return rows


@dataclass(frozen=True)
class Csv:
    """A generated CSV: its path, the size asked for, its size and its rows."""

    path: Path
    label: str
    bytes: int
    rows: int


def cached_csv(work: Path, label: str) -> Csv:
    """The CSV of size `label` in `work`, generated unless its marker says it is already there."""
    target = parse_size(label)
    path = work / f"ingest-{target}.csv"
    marker = work / f"ingest-{target}.json"
    wanted = {"format": DATA_FORMAT, "seed": SEED, "target": target}
    if path.exists() and marker.exists():
        known = json.loads(marker.read_text())
        if {k: known.get(k) for k in wanted} == wanted and known["bytes"] == path.stat().st_size:
            return Csv(path, label, known["bytes"], known["rows"])
    marker.unlink(missing_ok=True)
    print(f"generating a {label} CSV ({target:,} bytes) in {work} ...", flush=True)
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, str(ENTRY), "--generate", str(path), str(target)],
        stdout=subprocess.PIPE,
        text=True,
        check=True,
    )
    rows = int(out.stdout)
    size = path.stat().st_size
    marker.write_text(json.dumps({**wanted, "bytes": size, "rows": rows}))
    print(f"  {rows:,} rows, {size / 1e6:.1f} MB in {time.perf_counter() - started:.0f} s")
    return Csv(path, label, size, rows)


# --- the two sides (run in a child process) ----------------------------------------------------


def flywheel_spec(csv: Path) -> Any:
    """The DatasetSpec of the bench: the CSV as a file:// source, a few rules, a large maxBytes
    when the source has that field (so that the size cap is not what is measured)."""
    from pydantic import BaseModel

    from flywheel.api.dataset import DatasetSpec

    source: dict[str, Any] = {"uri": f"file://{csv}"}
    model = DatasetSpec.model_fields["source"].annotation
    if isinstance(model, type) and issubclass(model, BaseModel):
        fields = model.model_fields
        if any(n == "max_bytes" or f.alias == "maxBytes" for n, f in fields.items()):
            source["maxBytes"] = SOURCE_MAX_BYTES
    return DatasetSpec.model_validate(
        {
            "source": source,
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


def run_flywheel(csv: Path, store_root: Path) -> dict[str, Any]:
    """The ingest path, as the Job runs it; rows and digest from its report."""
    import inspect

    from flywheel.artifacts import ArtifactStore
    from flywheel.jobs.ingest import ingest

    spec = flywheel_spec(csv)
    # The Job may be given the size cap apart from the spec (IngestArgs.max_bytes): same value.
    extra: dict[str, Any] = {}
    if "max_bytes" in inspect.signature(ingest).parameters:
        extra["max_bytes"] = parse_size(SOURCE_MAX_BYTES)
    started = time.perf_counter()
    report = ingest(
        spec,
        namespace="bench",
        name="d",
        claim="c",
        store=ArtifactStore(store_root),
        previous_digest=None,
        **extra,
    )
    return {
        "seconds": time.perf_counter() - started,
        "rows": report.rows,
        "digest": report.digest,
    }


def numeric_stats(series: pd.Series) -> dict[str, Any]:
    """What the ingest computes per numeric column, with numpy."""
    import numpy as np

    values = series.dropna().to_numpy(dtype=float)
    probabilities = np.concatenate([np.linspace(0.0, 1.0, BINS + 1), QUANTILES])
    cuts = np.quantile(values, probabilities)
    edges = np.unique(cuts[: BINS + 1])
    positions = np.searchsorted(edges, values, side="right")
    positions = np.where(values == edges[-1], len(edges) - 1, positions)
    return {
        "count": len(values),
        "nulls": int(series.isna().sum()),
        "min": float(values.min()),
        "max": float(values.max()),
        "mean": float(values.mean()),
        "std": float(values.std(ddof=1)),
        "quantiles": cuts[BINS + 1 :].tolist(),
        "edges": edges.tolist(),
        "counts": np.bincount(positions, minlength=len(edges) + 1).tolist(),
    }


def categorical_stats(series: pd.Series, top_k: int) -> dict[str, Any]:
    """What the ingest computes per categorical column: value counts, the top K."""
    counts = series.dropna().astype(str).value_counts()
    return {
        "count": int(counts.sum()),
        "nulls": int(series.isna().sum()),
        "unique": int(counts.size),
        "top": {str(k): int(v) for k, v in counts.iloc[:top_k].items()},
    }


def column_digest(frame: pd.DataFrame) -> str:
    """`flywheel.dev/digest/v1`: sha256 over each column's name, kind, null mask and bytes."""
    import numpy as np
    import pandas as pd

    digest = hashlib.sha256(b"flywheel.dev/digest/v1\n")
    for name in frame.columns:
        column = frame[name]
        nulls = column.isna().to_numpy()
        if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
            kind = "i" if pd.api.types.is_integer_dtype(column) else "f"
            values = column.to_numpy(dtype="<i8" if kind == "i" else "<f8", na_value=0)
            digest.update(f"{name}\x00{kind}\x00".encode())
            digest.update(np.packbits(nulls).tobytes())
            digest.update(np.ascontiguousarray(values).tobytes())
        else:
            texts = column.astype(str).to_numpy(dtype=object)
            texts[nulls] = "\x00"
            digest.update(f"{name}\x00s\x00".encode())
            digest.update("\x1e".join(texts.tolist()).encode())
    return "sha256:" + digest.hexdigest()


def run_pandas(csv: Path) -> dict[str, Any]:
    """pandas.read_csv of the whole file, then the ingest's statistics and digest by hand."""
    import numpy  # noqa: F401  (imported before the clock starts)
    import pandas as pd

    started = time.perf_counter()
    frame = pd.read_csv(csv)
    stats: dict[str, Any] = {}
    for name in frame.columns:
        column = frame[name]
        if name == "label":
            stats[name] = categorical_stats(column, top_k=1000)
        elif pd.api.types.is_numeric_dtype(column):
            stats[name] = numeric_stats(column)
        else:
            stats[name] = categorical_stats(column, top_k=TOP_K)
    json.dumps(stats)
    digest = column_digest(frame)
    return {"seconds": time.perf_counter() - started, "rows": len(frame), "digest": digest}


def child(side: str, csv: Path, result: Path, store_root: Path) -> None:
    """Run one side; its figures as JSON in `result`."""
    try:
        figures = run_flywheel(csv, store_root) if side == "flywheel" else run_pandas(csv)
    finally:
        shutil.rmtree(store_root, ignore_errors=True)
    result.write_text(json.dumps(figures))


# --- how a side's run ended (the comparison table and the limited run report it) ---------------


@dataclass
class Run:
    """One side's run: how it ended, its figures (when it completed) and its peak RSS."""

    exit: int
    wall: float
    peak_mib: float
    figures: dict[str, Any]
    stderr: str

    @property
    def ok(self) -> bool:
        """Whether it completed."""
        return self.exit == 0 and "seconds" in self.figures

    @property
    def rows_per_s(self) -> float:
        """Throughput, rows per second of the child's own timing."""
        return float(self.figures["rows"]) / float(self.figures["seconds"])


def describe_failure(side: str, run: Run) -> str:
    """One line on how a side ended when it did not complete, and its stderr's tail."""
    how = f"killed by signal {-run.exit}" if run.exit < 0 else f"exit {run.exit}"
    tail = "\n".join("    " + line for line in run.stderr.strip().splitlines()[-12:])
    return f"{side} did not complete ({how}) after {run.wall:.1f} s:\n{tail}"


def verdict(ok: bool) -> str:
    """PASS or MISS."""
    return "PASS" if ok else "MISS"
