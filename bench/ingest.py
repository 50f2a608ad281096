"""Ingest throughput and peak memory against pandas, by CSV size, and a 2 GB CSV under 512 MiB.

Run:  .venv/bin/python bench/ingest.py                    # 100 MB and 1 GB, then 2 GB under 512 MiB
      .venv/bin/python bench/ingest.py --quick            # 10 MB and 100 MB, then 200 MB limited
      .venv/bin/python bench/ingest.py --work /var/tmp/fw # keep (and reuse) the generated CSVs
      .venv/bin/python bench/ingest.py --help             # every option

The data (ingest_sides.py): synthetic CSVs of a given size in bytes (16 numeric columns, 3
categorical ones, an integer label with 3 classes, fixed seed), written 200,000 rows at a time so
that generating them takes little memory, cached in the work directory (`--work`, else a temporary
directory under /tmp removed at the end) next to a marker that says what they hold.

Each side (ingest_sides.py) runs in a process of its own, so that its wall time and its peak RSS
(ru_maxrss, from wait4) are its own; seconds are timed in the child around the work, after the
imports (which the peak RSS includes, on both sides):

- flywheel: the ingest Job's whole path, :func:`flywheel.jobs.ingest.ingest` on a `file://`
  source (read, resolve the schema, validate the rules, content digest, statistics, Parquet
  snapshot + stats.json + schema.json published into a scratch artifact store);
- pandas: `pandas.read_csv` of the whole file plus the same statistics with numpy (per numeric
  column count, nulls, min, max, mean, std, quantiles 0.01..0.99, 10-bin quantile edges and the
  histogram counts; per categorical column the value counts and the top 20; the label's value
  counts) and the same sha256 over the column bytes (`flywheel.dev/digest/v1`); nothing
  validated or written.

The table gives, per size, rows, MB, seconds, rows/s and peak RSS of each side and the ratios
flywheel/pandas, then the targets: flywheel's peak RSS flat in the input size (largest / smallest
size <= 1.2x) and its throughput >= 1x the pandas path, each PASS or MISS (a MISS does not change
the exit status).

Then the limited run (ingest_limit.py; `--limit`, 512Mi by default; `--no-limit-run` skips it,
`--limit-only` runs only it): the flywheel ingest of a 2 GB CSV inside a cgroup v1 memory cgroup
with that memory.limit_in_bytes (root needed), created under this process's own memory cgroup and
removed afterwards. It reports whether the ingest completed or was OOM-killed, seconds, rows/s, the
cgroup's memory.max_usage_in_bytes (which counts page cache too, e.g. of the Parquet file written,
that the kernel reclaims before it kills) and ru_maxrss (the process's resident memory, what the
target is about). Without a usable memory cgroup it says so and only compares ru_maxrss with the
limit, which nothing then enforces.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ingest_limit import limited_run
from ingest_sides import (
    Csv,
    Run,
    cached_csv,
    child,
    describe_failure,
    make_csv,
    parse_size,
    verdict,
)

RSS_FLAT_TARGET = 1.2
THROUGHPUT_TARGET = 1.0


# --- running a side ----------------------------------------------------------------------------


def run_side(side: str, csv: Csv, work: Path, cgroup: Path | None = None) -> Run:
    """Run one side in a child process (moved into `cgroup` before it starts) and wait for it.

    The peak RSS is the child's ru_maxrss from wait4, which Linux carries over exec from the
    process it was forked from: so this process imports neither numpy nor pandas and generates
    the CSVs in children of their own, and its own peak (printed under the table) is a floor
    far below either side's.
    """
    tag = f"{side}-{os.getpid()}-{csv.bytes}"
    result, errors = work / f"{tag}.result.json", work / f"{tag}.stderr"
    result.unlink(missing_ok=True)
    command = [sys.executable, __file__, "--child", side, str(csv.path), str(result)]
    command.append(str(work / f"{tag}.store"))
    if cgroup is not None:
        # The shell joins the cgroup, then becomes the child: nothing runs outside the limit.
        join = 'echo $$ > "$0" && exec "$@"'
        command = ["sh", "-c", join, str(cgroup / "cgroup.procs"), *command]
    started = time.perf_counter()
    with errors.open("w") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    figures = json.loads(result.read_text()) if result.exists() else {}
    result.unlink(missing_ok=True)
    text = errors.read_text(errors="replace")
    errors.unlink(missing_ok=True)
    return Run(process.returncode, wall, usage.ru_maxrss / 1024, figures, text)


# --- the comparison table ----------------------------------------------------------------------


def compare(csvs: list[Csv], work: Path) -> None:
    """Run both sides per size; print the table, the ratios and the targets."""
    results: list[tuple[Csv, Run, Run]] = []
    for csv in csvs:
        print(f"running {csv.label}: pandas ...", end="", flush=True)
        reference = run_side("pandas", csv, work)
        print(" flywheel ...", flush=True)
        flywheel = run_side("flywheel", csv, work)
        results.append((csv, flywheel, reference))

    def side(run: Run) -> str:
        if not run.ok:
            return f"{'failed':>8} {'':>11} {run.peak_mib:9.0f}"
        return f"{run.figures['seconds']:8.2f} {run.rows_per_s:11,.0f} {run.peak_mib:9.0f}"

    print()
    print(
        f"{'':27}  {'flywheel ingest':-^30}  {'pandas read_csv + stats':-^30}  "
        f"{'flywheel / pandas':-^20}"
    )
    print(
        f"{'size':>6} {'rows':>11} {'MB':>8}  "
        + f"{'s':>8} {'rows/s':>11} {'peak MiB':>9}  " * 2
        + f"{'rows/s':>9} {'peak RSS':>10}"
    )
    for csv, flywheel, reference in results:
        ratios = f"{'-':>9} {'-':>10}"
        if flywheel.ok and reference.ok:
            throughput = flywheel.rows_per_s / reference.rows_per_s
            ratios = f"{throughput:8.2f}x {flywheel.peak_mib / reference.peak_mib:9.2f}x"
        print(
            f"{csv.label:>6} {csv.rows:11,} {csv.bytes / 1e6:8.1f}  "
            f"{side(flywheel)}  {side(reference)}  {ratios}"
        )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        "(seconds: timed in each child, after its imports; peak: the child's ru_maxrss, its "
        f"imports included; this launcher's own peak, a floor under it: {own:.0f} MiB)"
    )
    print()
    for csv, flywheel, reference in results:
        for name, run in (("flywheel", flywheel), ("pandas", reference)):
            if not run.ok:
                print(f"{csv.label}: {describe_failure(name, run)}")
        if flywheel.ok and reference.ok:
            if flywheel.figures["rows"] != reference.figures["rows"]:
                print(
                    f"{csv.label}: rows differ: flywheel {flywheel.figures['rows']:,}, "
                    f"pandas {reference.figures['rows']:,}"
                )
            same = flywheel.figures["digest"] == reference.figures["digest"]
            print(
                f"{csv.label}: content digest flywheel vs pandas-side sha256: "
                + ("same" if same else "DIFFERENT")
            )

    done = [(csv, f, r) for csv, f, r in results if f.ok]
    if len(done) >= 2:
        (small, f_small, _), (large, f_large, _) = done[0], done[-1]
        growth = f_large.peak_mib / f_small.peak_mib
        print(
            f"flywheel peak RSS {large.label} / {small.label}: {f_large.peak_mib:.0f} / "
            f"{f_small.peak_mib:.0f} MiB = {growth:.2f}x  "
            f"(target <= {RSS_FLAT_TARGET}x) {verdict(growth <= RSS_FLAT_TARGET)}"
        )
    else:
        print("flywheel peak RSS flatness: needs two sizes that completed")
    for csv, flywheel, reference in results:
        if flywheel.ok and reference.ok:
            throughput = flywheel.rows_per_s / reference.rows_per_s
            print(
                f"throughput flywheel / pandas at {csv.label}: {throughput:.2f}x  "
                f"(target >= {THROUGHPUT_TARGET:g}x) {verdict(throughput >= THROUGHPUT_TARGET)}"
            )
        else:
            print(f"throughput flywheel / pandas at {csv.label}: no figure (a side failed) MISS")


# --- main --------------------------------------------------------------------------------------


def arguments(argv: list[str]) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        description="Flywheel ingest vs pandas.read_csv + the same statistics: rows/s and peak "
        "RSS by CSV size, then the ingest of a large CSV under a memory limit."
    )
    parser.add_argument(
        "--sizes", default="100M,1G", help="CSV sizes to compare (M, G: powers of 10; Mi, Gi: 2)"
    )
    parser.add_argument("--work", type=Path, help="keep and reuse the generated CSVs here")
    parser.add_argument("--limit", default="512Mi", help="memory limit of the limited run")
    parser.add_argument("--limit-size", default="2G", help="CSV size of the limited run")
    parser.add_argument("--no-limit-run", action="store_true", help="skip the limited run")
    parser.add_argument("--limit-only", action="store_true", help="only the limited run")
    parser.add_argument(
        "--quick", action="store_true", help="sizes 10M,100M and the limited run at 200M"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.sizes, args.limit_size = "10M,100M", "200M"
    if args.no_limit_run and args.limit_only:
        parser.error("--no-limit-run and --limit-only exclude each other")
    return args


def main(argv: list[str] | None = None) -> int:
    """Generate (or reuse) the CSVs, compare both sides per size, then the limited run."""
    words = sys.argv[1:] if argv is None else argv
    if words[:1] == ["--child"]:
        child(words[1], Path(words[2]), Path(words[3]), Path(words[4]))
        return 0
    if words[:1] == ["--generate"]:
        print(make_csv(Path(words[1]), int(words[2])))
        return 0
    args = arguments(words)
    work = args.work or Path(tempfile.mkdtemp(prefix="flywheel-bench-ingest-", dir="/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        if not args.limit_only:
            labels = [s.strip() for s in args.sizes.split(",") if s.strip()]
            csvs = sorted((cached_csv(work, label) for label in labels), key=lambda c: c.bytes)
            compare(csvs, work)
        if not args.no_limit_run:
            csv = cached_csv(work, args.limit_size)
            limited_run(csv, work, parse_size(args.limit), args.limit, run_side)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
