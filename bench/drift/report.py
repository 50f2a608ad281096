"""Scoring and printing: detection rates, per-feature precision and recall, false alarms, times.

A stream counts as detected when at least one of its shifted features is flagged; a no-shift
stream raises a false alarm when any feature is flagged. Per feature, over the shifted streams:
precision = flagged and shifted / flagged, recall = flagged and shifted / shifted. The
per-feature false-positive rate is the share of the 20 features flagged on no-shift streams.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from drift.streams import FEATURES, SIZES, StreamSpec

Outcome = tuple[StreamSpec, frozenset[str]]
"""One window and the features a method flagged in it."""


@dataclass(frozen=True)
class Summary:
    """One method on one window size."""

    detection: float  # shifted streams detected
    false_alarms: float  # no-shift streams with any flag
    precision: float
    recall: float
    fpr: float  # per-feature false-positive rate on no-shift streams
    streams: int
    clean: int


def _share(hits: int, total: int) -> float:
    return hits / total if total else float("nan")


def detected(spec: StreamSpec, flagged: frozenset[str]) -> bool:
    """A shifted stream with at least one shifted feature flagged; no-shift: any flag."""
    return bool(flagged & set(spec.shifted)) if spec.shifted else bool(flagged)


def summarise(outcomes: Sequence[Outcome]) -> Summary:
    """Pool a method's outcomes on one window size."""
    shifted = [(s, f) for s, f in outcomes if s.shifted]
    clean = [(s, f) for s, f in outcomes if not s.shifted]
    tp = sum(len(f & set(s.shifted)) for s, f in shifted)
    flagged = sum(len(f) for s, f in shifted)
    truth = sum(len(s.shifted) for s, _ in shifted)
    return Summary(
        detection=_share(sum(detected(s, f) for s, f in shifted), len(shifted)),
        false_alarms=_share(sum(bool(f) for _, f in clean), len(clean)),
        precision=_share(tp, flagged),
        recall=_share(tp, truth),
        fpr=_share(sum(len(f) for _, f in clean), len(clean) * len(FEATURES)),
        streams=len(shifted),
        clean=len(clean),
    )


def cell_rate(outcomes: Sequence[Outcome], kind: str, size: float) -> tuple[int, int]:
    """(detected, streams) of one shift cell."""
    cell = [(s, f) for s, f in outcomes if s.kind == kind and s.size == size]
    return sum(detected(s, f) for s, f in cell), len(cell)


def pct(value: float) -> str:
    """A share as a percentage ('-' for none)."""
    return "-" if value != value else f"{100 * value:.0f}%"


def print_detection(results: dict[str, list[Outcome]], rows: int) -> None:
    """Detection rate per shift cell, methods side by side (no shift: false-alarm rate)."""
    methods = list(results)
    width = max(13, *(len(m) + 1 for m in methods))
    print(f"\n## {rows:,}-row windows: streams detected (no shift: streams with a false alarm)")
    print(f"{'shift':16} {'n':>3}" + "".join(f"{m:>{width}}" for m in methods))
    for kind, sizes in SIZES.items():
        for size in sizes:
            label = "none" if kind == "none" else f"{kind} {size:g}"
            cells = [
                cell_rate([o for o in results[m] if o[0].rows == rows], kind, size) for m in methods
            ]
            print(
                f"{label:16} {cells[0][1]:>3}"
                + "".join(f"{pct(_share(*c)):>{width}}" for c in cells)
            )


def print_summary(
    results: dict[str, list[Outcome]], windows: list[int]
) -> dict[int, dict[str, Summary]]:
    """Pooled figures per method and window size."""
    table: dict[int, dict[str, Summary]] = {}
    print("\n## Pooled per window size (shifted streams; false alarms on no-shift streams)")
    header = f"{'window':>8} {'method':16} {'detected':>9} {'precision':>10} {'recall':>7}"
    print(header + f" {'false alarms':>13} {'feature FPR':>12}")
    for rows in windows:
        table[rows] = {}
        for method, outcomes in results.items():
            s = summarise([o for o in outcomes if o[0].rows == rows])
            table[rows][method] = s
            print(
                f"{rows:>8,} {method:16} {pct(s.detection):>9} {pct(s.precision):>10} "
                f"{pct(s.recall):>7} {pct(s.false_alarms):>8} of {s.clean:<2} "
                f"{100 * s.fpr:>11.1f}%"
            )
    return table


def print_recall_by_kind(results: dict[str, list[Outcome]], windows: list[int]) -> None:
    """Per-feature recall (shifted features flagged / shifted features) per shift kind."""
    kinds = [k for k in SIZES if k != "none"]
    print("\n## Per-feature recall by shift kind (all sizes pooled)")
    print(f"{'window':>8} {'method':16}" + "".join(f"{k:>8}" for k in kinds))
    for rows in windows:
        for method, outcomes in results.items():
            line = f"{rows:>8,} {method:16}"
            for kind in kinds:
                cell = [(s, f) for s, f in outcomes if s.rows == rows and s.kind == kind]
                hits = sum(len(f & set(s.shifted)) for s, f in cell)
                line += f"{pct(_share(hits, sum(len(s.shifted) for s, _ in cell))):>8}"
            print(line)


def print_targets(
    table: dict[int, dict[str, Summary]],
    results: dict[str, list[Outcome]],
    ours: str,
    peers: list[str],
    speed: dict[str, float],
) -> None:
    """The issue's targets, met or missed."""
    print(f"\n## Targets ({ours})")
    for rows, by_method in table.items():
        mine = by_method[ours]
        present = [p for p in peers if p in by_method]
        if not present:
            continue
        best = max(present, key=lambda p: by_method[p].detection)
        other = by_method[best]
        met = (
            mine.detection >= other.detection
            and mine.false_alarms <= 0.05
            and mine.false_alarms <= other.false_alarms
        )
        behind = 0
        cells = 0
        for kind, sizes in SIZES.items():
            for size in sizes if kind != "none" else ():
                cells += 1
                scoped = {m: [o for o in results[m] if o[0].rows == rows] for m in results}
                mine_cell = _share(*cell_rate(scoped[ours], kind, size))
                top = max(_share(*cell_rate(scoped[p], kind, size)) for p in present)
                behind += mine_cell < top
        print(
            f"{rows:>8,} rows: detected {pct(mine.detection)} vs {best} {pct(other.detection)}; "
            f"false alarms {pct(mine.false_alarms)} vs {pct(other.false_alarms)}: "
            f"{'MET' if met else 'MISSED'} (behind the better peer in {behind} of {cells} cells)"
        )
        quiet = [p for p in present if by_method[p].false_alarms <= 0.05]
        if best not in quiet and quiet:
            calm = max(quiet, key=lambda p: by_method[p].detection)
            print(
                f"{'':14}better peer with false alarms <= 5%: {calm} "
                f"{pct(by_method[calm].detection)} ({pct(by_method[calm].false_alarms)})"
            )
    for peer, ratio in speed.items():
        print(f"decision speed vs {peer}: {ratio:,.0f}x ({'MET' if ratio >= 100 else 'MISSED'})")


def median(values: Sequence[float]) -> float:
    """The median of timings."""
    return float(statistics.median(values))
