"""Drift-detection benchmark: our drift decision beside the textbook test, Evidently and NannyML.

Usage:  .venv/bin/python bench/drift/run.py [--quick] [--windows 500,5000,50000]
        [--reps 6,6,4] [--none-reps 100,100,40] [--peers evidently,nannyml] [--shards 2]
        [--timing-loops 5] [--no-timing | --timing-only]

Method (streams.py has the data): one 20,000-row reference frame of 20 features and a
classifier's predictions, and windows of 500, 5,000 and 50,000 rows with known shifts, each cell
repeated with fresh seeds; every side decides on the very same windows whether each of the 21
columns drifted. Ours (ours.py: the product's baseline, serving bins and `judge`, the default
`DriftRule()` and two others for context), the textbook test (textbook.py: KS / chi-square,
Bonferroni), Evidently's DataDriftPreset and NannyML's univariate drift calculator with their
defaults (peers.py, each in its own virtualenv under $FLYWHEEL_BENCH_DIR, default
~/.cache/flywheel/bench-drift). The accuracy part runs the peers' workers in parallel with ours;
then, with nothing else running, the timing part: deciding one no-shift window per size (ours
from bin counts, as the operator does, and separately the binning of the raw window; the others
on raw frames), medians of `--timing-loops` runs. Tables and verdicts: report.py, targets.py.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from drift.ours import RULES, Ours
from drift.report import Outcome, print_report
from drift.streams import (
    REFERENCE_ROWS,
    StreamSpec,
    digest,
    generate,
    hash_seed,
    plan,
    reference,
)
from drift.targets import Timing, print_targets, print_timing
from drift.textbook import Textbook
from drift.workers import WORK, collect, ensure_venv, fields, launch

TEXTBOOK = "textbook"


def timing_specs(windows: list[int]) -> list[StreamSpec]:
    """One fixed no-shift window per size, for the timing part."""
    return [StreamSpec("none", 0.0, rows, 424_242 + rows) for rows in windows]


def run_local(
    ours: Ours, textbook: Textbook, specs: list[StreamSpec]
) -> tuple[dict[str, list[Outcome]], dict[Any, str], dict[int, list[float]]]:
    """Ours and the textbook test on every window, the windows' digests and our default rule's
    seconds per decision by window size."""
    results: dict[str, list[Outcome]] = {name: [] for name, _ in RULES}
    results[TEXTBOOK] = []
    digests: dict[Any, str] = {}
    seconds: dict[int, list[float]] = {}
    for spec in specs:
        window = generate(spec)
        digests[tuple(fields(spec))] = digest(window)
        counts = ours.counts(window)
        ours.check(window, counts)
        for name, rule in RULES:
            started = time.perf_counter()
            results[name].append((spec, ours.flagged(counts, rule)))
            if name == RULES[0][0]:
                seconds.setdefault(spec.rows, []).append(time.perf_counter() - started)
        results[TEXTBOOK].append((spec, textbook.flagged(window)))
    return results, digests, seconds


def extra_none(
    windows: list[int], after: dict[int, int], count: dict[int, int]
) -> list[StreamSpec]:
    """More no-shift windows (seeds after the plan's), for ours and the textbook test only."""
    return [
        StreamSpec("none", 0.0, rows, hash_seed("none", 0.0, rows, rep))
        for rows in windows
        for rep in range(after[rows], after[rows] + count[rows])
    ]


def accuracy(
    specs: list[StreamSpec], extra: list[StreamSpec], peers: list[str], shards: int
) -> tuple[Ours, Textbook, dict[str, list[Outcome]], dict[str, Any], dict[tuple[str, int], Any]]:
    """Every side on every window (ours and the textbook test while the peers' workers run, then
    on the `extra` windows); the peers' run information and seconds per window."""
    running = []
    for peer in peers:
        count = max(1, shards) if peer == "evidently" else 1
        for i in range(count):
            job = {"specs": [fields(s) for s in specs[i::count]]}
            running.append((peer, *launch(peer, f"{peer}-{i}", job)))
    try:
        frame = generate(reference())
        ours, textbook = Ours.fit(frame), Textbook.fit(frame)
        results, digests, ours_seconds = run_local(ours, textbook, specs)
        more = run_local(ours, textbook, extra)[0]
    except BaseException:
        for _, process, _ in running:
            process.kill()
        raise
    results.update({f"{name} (extra)": outcomes for name, outcomes in more.items()})
    info: dict[str, Any] = {}
    seconds: dict[tuple[str, int], list[float]] = {
        (RULES[0][0], rows): v for rows, v in ours_seconds.items()
    }
    for peer, process, out in running:
        result = collect(process, out)
        info.setdefault(peer, result)
        results.setdefault(peer, [])
        for row in result["results"]:
            if digests[tuple(row["spec"])] != row["digest"]:
                raise SystemExit(f"{peer} saw other data for {row['spec']}")
            spec = StreamSpec(*row["spec"])
            results[peer].append((spec, dict.fromkeys(row["flagged"], peer)))
            seconds.setdefault((peer, spec.rows), []).append(row["seconds"])
    return ours, textbook, results, info, seconds


def timing(
    ours: Ours, textbook: Textbook, peers: list[str], windows: list[int], loops: int
) -> Timing:
    """Each side alone on the machine, one no-shift window per size."""
    specs = timing_specs(windows)
    found = Timing(loads=os.getloadavg())
    for spec in specs:
        window = generate(spec)
        counts = ours.counts(window)
        found.ours[spec.rows] = ours.time_decision(counts, RULES[0][1], loops)
        found.binning[spec.rows] = ours.time_binning(window, loops)
        found.textbook[spec.rows] = textbook.time_decision(window, loops)
    for peer in peers:
        job = {"specs": [], "timing": {"specs": [fields(s) for s in specs], "loops": loops}}
        result = collect(*launch(peer, f"{peer}-timing", job))
        for row, spec in zip(result["timing"], specs, strict=True):
            if row["digest"] != digest(generate(spec)):
                raise SystemExit(f"{peer} timed other data")
            found.peers.setdefault(peer, {})[spec.rows] = row["seconds"]
        found.imports[peer] = result["import_s"]
        found.fits[peer] = result["fit_s"]
    return found


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 reps, 10 no-shift per size")
    parser.add_argument("--windows", default="500,5000,50000")
    parser.add_argument("--reps", default="6,6,4", help="windows per shift cell, per size")
    parser.add_argument("--none-reps", default="100,100,40", help="no-shift windows per size")
    parser.add_argument(
        "--extra-none", default="1000,1000,200", help="more no-shift windows, ours and textbook"
    )
    parser.add_argument("--peers", default="evidently,nannyml")
    parser.add_argument("--shards", type=int, default=2, help="parallel Evidently workers")
    parser.add_argument("--timing-loops", type=int, default=5)
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--timing-only", action="store_true", help="skip the accuracy part")
    return parser.parse_args()


def main() -> int:
    """Run the accuracy matrix, then the timing, and print the tables and verdicts."""
    args = arguments()
    windows = [int(w) for w in args.windows.split(",")]
    reps = [int(r) for r in args.reps.split(",")]
    none_reps = [int(r) for r in args.none_reps.split(",")]
    extra = [int(r) for r in args.extra_none.split(",")]
    if args.quick:
        reps, none_reps = [2] * len(windows), [10] * len(windows)
        extra = [0] * len(windows)
    reps_by = dict(zip(windows, reps, strict=True))
    none_by = dict(zip(windows, none_reps, strict=True))
    extra_by = dict(zip(windows, extra, strict=True))
    peers = [p for p in args.peers.split(",") if p]
    began = time.monotonic()
    for peer in peers:
        ensure_venv(peer)
    print(f"command: {' '.join(sys.argv)}\nmachine: {os.cpu_count()} cores")
    if args.timing_only:
        frame = generate(reference())
        alone = timing(Ours.fit(frame), Textbook.fit(frame), peers, windows, args.timing_loops)
        print_timing(alone, {})
        return 0
    specs = plan(windows, reps_by, none_by)
    print(f"{len(specs)} windows; reference {REFERENCE_ROWS:,} rows x 20 features + prediction")
    print(
        "windows per shift cell / no-shift: "
        + ", ".join(f"{w:,}: {reps_by[w]}/{none_by[w]}" for w in windows)
    )
    more = extra_none(windows, none_by, extra_by)
    print(f"and {len(more)} more no-shift windows for ours and the textbook test only")
    ours, textbook, results, info, seconds = accuracy(specs, more, peers, args.shards)
    accuracy_s = time.monotonic() - began
    print_report(results, windows)
    found: Timing | None = None
    if not args.no_timing:
        found = timing(ours, textbook, peers, windows, args.timing_loops)
        print_timing(found, seconds)
    print_targets(results, windows, found)
    print_versions(info)
    total = time.monotonic() - began
    print(f"runtime: accuracy part {accuracy_s / 60:.1f} min, total {total / 60:.1f} min")
    (WORK / "results.json").write_text(
        json.dumps({m: [[*fields(s), f] for s, f in o] for m, o in results.items()})
    )
    return 0


def print_versions(info: dict[str, Any]) -> None:
    """Versions, and what the peers' defaults picked."""
    print(
        f"\nversions: numpy {np.__version__}, pandas {pd.__version__} (ours, textbook); "
        + "; ".join(f"{p} {i['version']} (pandas {i['pandas']})" for p, i in info.items())
    )
    for peer, result in info.items():
        print(f"{peer} methods: {'; '.join(sorted(set(map(str, result['methods'].values()))))}")
        for chunk, limits in result.get("thresholds", {}).items():
            values = sorted(limits.values())
            print(
                f"{peer} thresholds (reference chunks of {chunk} rows): "
                f"{values[0]:.4f}-{values[-1]:.4f}, median {values[len(values) // 2]:.4f}"
            )


if __name__ == "__main__":
    sys.exit(main())
