"""Scoring and the accuracy tables: detection per shift cell, precision, false alarms, reasons.

A window alarms when any of its 21 columns drifts (the product raises the alarm at
`minDriftedFeatures: 1`); a shifted window that alarms is detected, a no-shift window that alarms
is a false alarm. Precision, over the shifted windows: alarms on the columns the shift moved /
all alarms. The false-alarm rate comes with its one-sided 95 % upper bound (Clopper-Pearson).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

from scipy import stats

from drift.streams import COLUMNS, SIZES, StreamSpec, label

Outcome = tuple[StreamSpec, Mapping[str, str]]
"""One window and the columns a side flagged in it (with the check that fired, for ours)."""
ORDER = ["ours", "textbook", "nannyml", "evidently", "ours a=0.05", "ours js", "ours psi>0.2"]


def methods(results: Mapping[str, Sequence[Outcome]]) -> list[str]:
    """The sides present, in table order."""
    return [m for m in ORDER if m in results] + [m for m in results if m not in ORDER]


def share(hits: int, total: int) -> float:
    """hits / total (NaN for none)."""
    return hits / total if total else float("nan")


def pct(value: float) -> str:
    """A share as a percentage ('-' for none)."""
    return "-" if value != value else f"{100 * value:.0f}%"


def detected(flagged: Mapping[str, str]) -> bool:
    """Whether the window alarms: any column flagged."""
    return bool(flagged)


def scoped(outcomes: Sequence[Outcome], rows: int, kind: str | None = None) -> list[Outcome]:
    """The outcomes of one window size (and shift kind)."""
    return [o for o in outcomes if o[0].rows == rows and (kind is None or o[0].kind == kind)]


def cell_rate(outcomes: Sequence[Outcome], rows: int, kind: str, size: float) -> tuple[int, int]:
    """(detected, windows) of one shift cell."""
    cell = [(s, f) for s, f in scoped(outcomes, rows, kind) if s.size == size]
    return sum(detected(f) for _, f in cell), len(cell)


def false_alarms(outcomes: Sequence[Outcome], rows: int) -> tuple[int, int]:
    """(no-shift windows with an alarm, no-shift windows) at one size."""
    clean = scoped(outcomes, rows, "none")
    return sum(detected(f) for _, f in clean), len(clean)


def upper_bound(hits: int, total: int) -> float:
    """The one-sided 95 % Clopper-Pearson upper bound of a rate seen as hits / total."""
    if total == 0:
        return float("nan")
    return 1.0 if hits >= total else float(stats.beta.ppf(0.95, hits + 1, total - hits))


def print_detection(results: Mapping[str, Sequence[Outcome]], rows: int) -> None:
    """Detection rate per shift cell, sides side by side (no shift: false-alarm rate)."""
    names = methods(results)
    width = max(10, *(len(m) + 2 for m in names))
    print(f"\n## {rows:,}-row windows: windows detected (none: windows with a false alarm)")
    print(f"{'shift':20} {'n':>4}" + "".join(f"{m:>{width}}" for m in names))
    for kind, sizes in SIZES.items():
        for size in sizes:
            cells = [cell_rate(results[m], rows, kind, size) for m in names]
            print(
                f"{label(kind, size):20} {cells[0][1]:>4}"
                + "".join(f"{pct(share(*c)):>{width}}" for c in cells)
            )


def print_precision(results: Mapping[str, Sequence[Outcome]], windows: list[int]) -> None:
    """Per size and kind: alarms on moved columns / all alarms, over the shifted windows."""
    kinds = [k for k in SIZES if k != "none"]
    print("\n## Precision: alarms on the moved columns / all alarms (shifted windows)")
    print(f"{'window':>7} {'side':14}" + "".join(f"{k:>8}" for k in kinds))
    for rows in windows:
        for method in methods(results):
            line = f"{rows:>7,} {method:14}"
            for kind in kinds:
                cell = scoped(results[method], rows, kind)
                right = sum(len(set(f) & set(s.shifted)) for s, f in cell)
                line += f"{pct(share(right, sum(len(f) for _, f in cell))):>8}"
            print(line)


def print_false_alarms(
    results: Mapping[str, Sequence[Outcome]], windows: list[int], title: str = ""
) -> None:
    """No-shift windows with an alarm, their 95 % upper bound and the per-column rate."""
    print(
        f"\n## False alarms{title}: no-shift windows with any alarm (95% upper bound; per column)"
    )
    for rows in windows:
        for method in methods(results):
            hits, total = false_alarms(results[method], rows)
            columns = sum(len(f) for _, f in scoped(results[method], rows, "none"))
            print(
                f"{rows:>7,} {method:14} {hits:>3} of {total:<5} {100 * share(hits, total):5.1f}% "
                f"(<= {100 * upper_bound(hits, total):.1f}%)   per column "
                f"{100 * share(columns, total * len(COLUMNS)):.2f}%"
            )


def print_reasons(outcomes: Sequence[Outcome], windows: list[int]) -> None:
    """Which of our checks fired on the moved columns, per kind (all window sizes)."""
    print("\n## Ours (default): the check that fired on the moved columns, all sizes")
    for kind in (k for k in SIZES if k != "none"):
        for rows in windows:
            cell = scoped(outcomes, rows, kind)
            fired = Counter(r for s, f in cell for n, r in f.items() if n in s.shifted)
            moved = sum(len(s.shifted) for s, _ in cell)
            text = ", ".join(f"{r} {c}" for r, c in fired.most_common()) or "-"
            print(f"{kind:8} {rows:>7,}: {sum(fired.values())} of {moved} moved columns ({text})")


EXTRA = " (extra)"
"""Suffix of the sides' outcomes on the extra no-shift windows (ours and the textbook only)."""


def shared(results: Mapping[str, Sequence[Outcome]]) -> dict[str, Sequence[Outcome]]:
    """The outcomes on the windows every side saw."""
    return {m: o for m, o in results.items() if not m.endswith(EXTRA)}


def pooled_none(results: Mapping[str, Sequence[Outcome]]) -> dict[str, list[Outcome]]:
    """Per side with extra windows: its no-shift outcomes, shared and extra windows together."""
    return {
        m[: -len(EXTRA)]: [o for o in results[m[: -len(EXTRA)]] if not o[0].shifted] + list(o)
        for m, o in results.items()
        if m.endswith(EXTRA)
    }


def print_report(results: Mapping[str, Sequence[Outcome]], windows: list[int]) -> None:
    """Every accuracy table."""
    common = shared(results)
    for rows in windows:
        print_detection(common, rows)
    print_false_alarms(common, windows)
    if everything := pooled_none(results):
        print_false_alarms(everything, windows, " on all no-shift windows (shared + extra)")
    print_precision(common, windows)
    if "ours" in common:
        print_reasons(common["ours"], windows)
