"""Drift-detection benchmark: our drift statistics beside Evidently and NannyML, one command.

Usage:  .venv/bin/python bench/drift/run.py [--quick] [--windows 1000,10000,100000]
        [--reps 10,10,5] [--none-reps 30,20,10] [--peers evidently,nannyml] [--shards 2]
        [--timing-loops 5] [--no-timing | --timing-only]

Method (streams.py has the data): one 20,000-row reference frame of 20 features and windows of
1k, 10k and 100k rows with known shifts (mean, variance, category frequencies, a new category,
none), each cell repeated with fresh seeds. Every side decides per feature whether it drifted:
ours (ours.py: the product's baseline, serving bins and ModelMonitor scores; PSI > 0.2 is the
default, Jensen-Shannon > 0.1 and Wasserstein > 0.1 are shown too), Evidently's DataDriftPreset
and NannyML's univariate drift calculator with their defaults (peers.py, each in its own
virtualenv under $FLYWHEEL_BENCH_DIR, default ~/.cache/flywheel/bench-drift). The accuracy part
runs the peers' workers in parallel; then, with nothing else running, the timing part: deciding
20 features on one 100k-row window (ours from bin counts, as the operator does, and separately
the binning of the raw window; theirs their run/calculate call on raw frames), medians of
`--timing-loops` runs. Tables: report.py.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import pandas as pd

from drift.ours import CONFIGS, Ours
from drift.report import (
    Outcome,
    median,
    print_detection,
    print_recall_by_kind,
    print_summary,
    print_targets,
)
from drift.streams import StreamSpec, digest, generate, plan, reference

ROOT = Path(__file__).resolve().parents[2]
WORK = Path(os.environ.get("FLYWHEEL_BENCH_DIR", Path.home() / ".cache/flywheel/bench-drift"))
UV = ROOT / ".venv/bin/uv"
WORKER = Path(__file__).resolve().parent / "peers.py"
PEERS: dict[str, list[str]] = {
    "evidently": ["evidently==0.7.23", "pandas==2.3.3"],
    # nannyml 0.13.1 imports statsmodels without declaring it.
    "nannyml": ["nannyml==0.13.1", "statsmodels==0.15.0", "pandas==2.3.3"],
}
TIMING = StreamSpec("mean", 0.5, 100_000, 424_242)


def ensure_venv(peer: str) -> Path:
    """The peer's own virtualenv (uv, Python 3.11, PyPI), reused while its pins are unchanged."""
    venv = WORK / f"{peer}-venv"
    stamp = venv / ".packages"
    packages = PEERS[peer]
    if not stamp.exists() or stamp.read_text() != "\n".join(packages):
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([str(UV), "venv", "--quiet", "--python", "3.11", str(venv)], check=True)
        subprocess.run(
            [str(UV), "pip", "install", "--quiet", "--python", str(venv / "bin/python"), *packages],
            check=True,
        )
        stamp.write_text("\n".join(packages))
    return venv


def launch(peer: str, name: str, job: dict[str, Any]) -> tuple[subprocess.Popen[bytes], Path]:
    """Start one worker on a job; its JSON lands in the returned path."""
    run = WORK / "run"
    run.mkdir(parents=True, exist_ok=True)
    (run / f"{name}.job.json").write_text(json.dumps(job))
    out = run / f"{name}.out.json"
    out.unlink(missing_ok=True)
    argv = [str(WORK / f"{peer}-venv/bin/python"), str(WORKER), "--peer", peer]
    argv += ["--job", str(run / f"{name}.job.json"), "--out", str(out)]
    env = {**os.environ, "NML_DISABLE_USAGE_LOGGING": "1"}
    with (run / f"{name}.log").open("wb") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
    return process, out


def collect(process: subprocess.Popen[bytes], out: Path) -> dict[str, Any]:
    """Wait for a worker and read its result."""
    if process.wait() != 0:
        raise SystemExit(f"worker failed: {out.with_suffix('').with_suffix('.log').read_text()}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def fields(spec: StreamSpec) -> list[Any]:
    """A spec as JSON fields."""
    return [spec.kind, spec.size, spec.rows, spec.seed]


def run_ours(specs: list[StreamSpec]) -> tuple[Ours, dict[str, list[Outcome]], dict[Any, str]]:
    """Our decisions on every window (while the peers' workers run), and the windows' digests."""
    ours = Ours.fit(generate(reference()))
    results: dict[str, list[Outcome]] = {name: [] for name, _, _ in CONFIGS}
    digests: dict[Any, str] = {}
    for spec in specs:
        window = generate(spec)
        digests[tuple(fields(spec))] = digest(window)
        counts = ours.counts(window)
        ours.check(window, counts)
        for name, method, threshold in CONFIGS:
            results[name].append((spec, frozenset(ours.flagged(counts, method, threshold))))
    return ours, results, digests


def main() -> int:
    """Run the accuracy matrix, then the timing, and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1k and 10k, 2 reps, 4 no-shift")
    parser.add_argument("--windows", default="1000,10000,100000")
    parser.add_argument("--reps", default="10,10,5", help="windows per shift cell, per size")
    parser.add_argument("--none-reps", default="30,20,10", help="no-shift windows per size")
    parser.add_argument("--peers", default="evidently,nannyml")
    parser.add_argument("--shards", type=int, default=2, help="parallel Evidently workers")
    parser.add_argument("--timing-loops", type=int, default=5)
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--timing-only", action="store_true", help="skip the accuracy part")
    args = parser.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    reps = [int(r) for r in args.reps.split(",")]
    none_reps = [int(r) for r in args.none_reps.split(",")]
    if args.quick:
        windows, reps, none_reps = [1000, 10000], [2, 2], [4, 4]
    reps_by = dict(zip(windows, reps, strict=True))
    none_by = dict(zip(windows, none_reps, strict=True))
    peers = [p for p in args.peers.split(",") if p]
    began = time.monotonic()
    for peer in peers:
        ensure_venv(peer)
    if args.timing_only:
        print(f"command: {' '.join(sys.argv)}\nmachine: {os.cpu_count()} cores")
        timing(Ours.fit(generate(reference())), peers, {}, args.timing_loops)
        return 0
    specs = plan(windows, reps_by, none_by)
    print(f"command: {' '.join(sys.argv)}")
    print(f"machine: {os.cpu_count()} cores; {len(specs)} windows; reference 20,000 rows x 20")
    print(
        "windows per shift cell / no-shift: "
        + ", ".join(f"{w:,}: {reps_by[w]}/{none_by[w]}" for w in windows)
    )
    running = []
    for peer in peers:
        shards = max(1, args.shards) if peer == "evidently" else 1
        for i in range(shards):
            job = {"specs": [fields(s) for s in specs[i::shards]]}
            running.append((peer, *launch(peer, f"{peer}-{i}", job)))
    try:
        ours, results, digests = run_ours(specs)
    except BaseException:
        for _, process, _ in running:
            process.kill()
        raise
    peer_info: dict[str, dict[str, Any]] = {}
    seconds: dict[tuple[str, int], list[float]] = {}
    for peer, process, out in running:
        info = collect(process, out)
        peer_info.setdefault(peer, info)
        results.setdefault(peer, [])
        for row in info["results"]:
            if digests[tuple(row["spec"])] != row["digest"]:
                raise SystemExit(f"{peer} saw other data for {row['spec']}")
            spec = StreamSpec(*row["spec"])
            results[peer].append((spec, frozenset(row["flagged"])))
            seconds.setdefault((peer, spec.rows), []).append(row["seconds"])
    accuracy_s = time.monotonic() - began
    for rows in windows:
        print_detection(results, rows)
    table = print_summary(results, windows)
    print_recall_by_kind(results, windows)
    speed = {} if args.no_timing else timing(ours, peers, seconds, args.timing_loops)
    print_targets(table, results, CONFIGS[0][0], peers, speed)
    print(
        f"\nversions: numpy {np.__version__}, pandas {pd.__version__} (ours); "
        + "; ".join(f"{p} {i['version']} (pandas {i['pandas']})" for p, i in peer_info.items())
    )
    for peer, info in peer_info.items():
        print(f"{peer} methods: {'; '.join(sorted(set(map(str, info['methods'].values()))))}")
        for chunk, limits in info.get("thresholds", {}).items():
            values = sorted(limits.values())
            print(
                f"{peer} thresholds (reference chunks of {chunk} rows): "
                f"{values[0]:.4f}-{values[-1]:.4f}, median {median(values):.4f}"
            )
    total = time.monotonic() - began
    print(f"runtime: accuracy part {accuracy_s / 60:.1f} min, total {total / 60:.1f} min")
    (WORK / "results.json").write_text(
        json.dumps({m: [[*fields(s), sorted(f)] for s, f in o] for m, o in results.items()})
    )
    return 0


def timing(
    ours: Ours,
    peers: list[str],
    seconds: dict[tuple[str, int], list[float]],
    loops: int,
) -> dict[str, float]:
    """Decide 20 features on one 100k-row window, each side alone on the machine."""
    window = generate(TIMING)
    counts = ours.counts(window)
    decide = [ours.time_decision(counts, "psi", 0.2, 1000) for _ in range(loops)]
    binning = ours.time_binning(window, loops)
    print(f"\n## Time to decide 20 features x {TIMING.rows:,} rows (median of {loops} runs)")
    print(
        "load average before timing (1/5/15 min): " + " ".join(f"{x:.1f}" for x in os.getloadavg())
    )
    print(f"ours psi, scoring from bin counts: {median(decide) * 1e3:10.3f} ms")
    print(f"ours, binning the raw window:      {binning * 1e3:10.1f} ms (serving, in batches)")
    speed = {}
    for peer in peers:
        result = collect(
            *launch(
                peer,
                f"{peer}-timing",
                {"specs": [], "timing": {"spec": fields(TIMING), "loops": loops}},
            )
        )
        if result["timing_digest"] != digest(window):
            raise SystemExit(f"{peer} timed other data")
        theirs = median(result["timing"])
        speed[peer] = theirs / median(decide)
        fit = result["fit_s"]
        fit_text = (
            ", ".join(f"{k} {v:.2f} s" for k, v in fit.items())
            if isinstance(fit, dict)
            else f"{fit:.2f} s"
        )
        print(
            f"{peer + ' run/calculate:':35}{theirs * 1e3:10.1f} ms "
            f"({min(result['timing']) * 1e3:.0f}-{max(result['timing']) * 1e3:.0f}); "
            f"import {result['import_s']:.1f} s, fit/reference {fit_text}; "
            f"ours {speed[peer]:,.0f}x faster from counts, "
            f"{theirs / (median(decide) + binning):,.1f}x counting our binning"
        )
        under_load = ", ".join(
            f"{rows:,}: {median(v):.2f} s" for (p, rows), v in sorted(seconds.items()) if p == peer
        )
        if under_load:
            print(f"{'':35}per-window medians in the accuracy part (parallel load): {under_load}")
    return speed


if __name__ == "__main__":
    sys.exit(main())
