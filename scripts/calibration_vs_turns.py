"""How an interleaved run's calibrations compare with its turns, case by case.

In ``sharedconv run --interleave`` each case is first calibrated alone in its worker (a fifth of
its budget, after its memory measurement; the cases of a problem one after another), then timed
in turns with the problem's other candidates. The calibration is a sequential measurement, the
turns a paired one: this prints how far the two medians of one case differ, and whether the
slow calibrations come one after another (a spell of the machine or of a process lasting
several cases) or alone.

    python scripts/calibration_vs_turns.py RUN [RUN ...]

A RUN is a run folder, or one kept gzipped by scripts/bench_floor.py (docs/performance-bench/).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_floor import unpack  # noqa: E402
from sharedconv.harness.store import read_run  # noqa: E402

SLOW = 1.2  # a calibration this much slower than its case's turns counts as slow


def ratios(folder: Path) -> list[float | None]:
    """Calibration median over turn median for each interleaved case, in the order the run
    wrote them (None between problems and for a case without turns)."""
    out: list[float | None] = []
    group = None
    for case in read_run(unpack(folder)).cases:
        timing = case.to_dict().get("timing") or {}
        turns = timing.get("interleaved")
        calibration = (timing.get("calibration") or {}).get("stats") or {}
        if not turns or not calibration.get("median") or not timing["stats"].get("median"):
            out.append(None)
            continue
        if turns.get("group") != group:
            out.append(None)  # a problem's calibrations are not next to another problem's
            group = turns.get("group")
        out.append(calibration["median"] / timing["stats"]["median"])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args()
    seq = [x for run in args.runs for x in [*ratios(run), None]]
    values = [x for x in seq if x is not None]
    if not values:
        sys.exit("no interleaved cases in these runs (sharedconv run --interleave)")
    slow = sum(x > SLOW for x in values)
    pairs = sum(1 for a, b in zip(seq, seq[1:], strict=False) if a and b)
    both = sum(1 for a, b in zip(seq, seq[1:], strict=False) if a and b and a > SLOW and b > SLOW)
    share = slow / len(values)
    deciles = statistics.quantiles(values, n=10)
    print(f"interleaved cases: {len(values)}")
    print(f"calibration median / turn median: median {statistics.median(values):.3f}")
    print(f"  deciles {', '.join(f'{q:.3f}' for q in deciles)}")
    print(
        f"  over {SLOW:g}x: {slow} ({share:.1%}); under 1/{SLOW:g}: {sum(x < 1 / SLOW for x in values)}"
    )
    print(
        f"consecutive cases both slow: {both} of {pairs} neighbouring pairs "
        f"(about {share * share * pairs:.0f} if slow calibrations came independently)"
    )


if __name__ == "__main__":
    main()
