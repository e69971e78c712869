"""Rankings and recommendations computed from stored records (pure functions).

The command line and the dashboard both read these; neither measures anything.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sharedconv.backends.problem import ConvProblem, ProblemError, parse_problem

from .memory import output_bytes as call_output_bytes
from .records import CaseRecord, Faults, Roofline

SEED_OPTIONS = {1: "Conv3D (1,K,K)", 2: "TimeDistributed / map over C", 3: "split + shared Conv2D"}


def output_bytes(record: CaseRecord) -> int | None:
    """Bytes of what one call returns (y, and dx, dw, db in train mode)."""
    if not record.params:
        return None
    try:
        p = ConvProblem.from_dict(record.params)
    except (ProblemError, KeyError, TypeError):
        return None
    return call_output_bytes(p, record.mode)


def peak_bytes(record: CaseRecord) -> int | None:
    """The measured peak memory of one call, or None when it cannot be right.

    A call must hold its own outputs, so a peak below their size is a measurement that missed
    memory (an allocator served the call from a pool it filled earlier): unknown, never shown.
    Runs since docs/memory.md apply the rule when they write; this keeps older runs honest.
    """
    peak = record.memory.peak_bytes if record.memory is not None else None
    if peak is None:
        return None
    floor = output_bytes(record)
    if floor and peak < floor:
        return None
    return peak


def memory_unknown_reason(record: CaseRecord) -> str | None:
    """Why a timed record has no peak memory (None when it has one)."""
    if peak_bytes(record) is not None:
        return None
    memory = record.memory
    if memory is None:
        return "not measured"
    if memory.unknown_reason:
        return memory.unknown_reason
    if memory.peak_bytes is not None:
        return "the measured peak was below the call's own outputs (an allocator pool hid it)"
    return memory.method or "not measured"


def timed(records: Iterable[CaseRecord]) -> list[CaseRecord]:
    return [r for r in records if r.status == "pass" and r.median]


@dataclass
class Row:
    record: CaseRecord
    median: float
    iqr: float
    noisy: bool
    peak_bytes: int | None
    gflops: float
    gbps: float
    roofline_fraction: float | None
    vs_option: dict[int, float]  # seed option -> (that option's best time / this time)
    faults: Faults | None = None  # timing.fault_counts of the timed blocks

    @property
    def label(self) -> str:
        return self.record.label


def roofline_fraction(record: CaseRecord, roofline: Roofline | None) -> float | None:
    """Attained fraction of the roofline bound min(peak FLOP/s, bandwidth x intensity)."""
    med = record.median
    if not med or roofline is None or not roofline.usable:
        return None
    flops, nbytes = record.flops, record.fewest_bytes
    if not flops or not nbytes:
        return None
    bound = min(roofline.peak_flops, roofline.copy_bytes_per_s * flops / nbytes)
    return (flops / med) / bound


def rank(records: Iterable[CaseRecord], roofline: Roofline | None = None) -> list[Row]:
    """The timed records of one problem and mode, fastest first, with speedups against the
    best implementation of each of the seed's three options."""
    rows = []
    best_option: dict[int, float] = {}
    records = timed(records)
    for r in records:
        if r.seed_option:
            best_option[r.seed_option] = min(best_option.get(r.seed_option, math.inf), r.median)
    for r in records:
        stats = r.timing.stats
        med = stats.median
        rows.append(
            Row(
                record=r,
                median=med,
                iqr=stats.iqr or 0.0,
                noisy=stats.noisy,
                peak_bytes=peak_bytes(r),
                gflops=r.gflops(med) or 0.0,
                gbps=r.gbps(med) or 0.0,
                roofline_fraction=roofline_fraction(r, roofline),
                vs_option={k: v / med for k, v in best_option.items()},
                faults=r.timing.faults,
            )
        )
    rows.sort(key=lambda row: row.median)
    # Timed interleaved: the paired ratios to the same fastest candidate rank them (drift that
    # lasted a cycle cancels there, not in the medians)
    paired = [row.record.paired for row in rows]
    complete = rows and all(p is not None and p.ratio is not None for p in paired)
    if complete and len({p.baseline for p in paired}) == 1:
        rows.sort(key=lambda row: row.record.paired.ratio)
    return rows


def group_by_problem(
    records: Iterable[CaseRecord],
) -> dict[tuple[str, str, str, str, str], list[CaseRecord]]:
    """Records by (problem, mode, device, allocator, machine): one ranking never mixes
    allocators, nor the machines of a cluster run (machine "" for a run made on one)."""
    groups: dict[tuple[str, str, str, str, str], list[CaseRecord]] = defaultdict(list)
    for r in records:
        groups[(r.problem, r.mode, r.device, r.malloc_name, r.machine_id)].append(r)
    return dict(groups)


def format_seconds(s: float | None) -> str:
    if s is None:
        return ""
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} µs"


def format_bytes(n: int | None) -> str:
    if n is None:
        return "unknown"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def parse_size(text: str) -> int:
    """``"2GiB"``, ``"512 MiB"``, ``"1.5G"``, ``"800M"``, ``"1000000"`` (bytes) -> bytes.

    Binary units either way (``G`` = ``GiB``): memory is sold and reported in them."""
    units = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    cleaned = text.strip().upper().replace(" ", "").removesuffix("IB").removesuffix("B")
    number = cleaned.rstrip("KMGT")
    unit = cleaned[len(number) :]
    try:
        value = float(number) * units[unit]
    except (ValueError, KeyError):
        raise ValueError(
            f"{text!r} is not a memory size; write e.g. 2GiB, 512MiB or a number of bytes"
        ) from None
    if not math.isfinite(value) or value <= 0:
        raise ValueError(f"{text!r}: a memory limit must be a positive size, e.g. 2GiB")
    return int(value)


def paired_text(record: CaseRecord) -> str:
    """A case timed interleaved: its time over the problem's fastest, with the interval."""
    return record.paired.text() if record.paired is not None else ""


def row_text(row: Row) -> dict[str, str]:
    """A ranked row's columns as text, one formatting for the terminal tables and the reports
    (HTML shows them all, Markdown a few)."""
    opt = row.record.seed_option
    cells = {
        "backend/strategy": row.label,
        "seed option": f"{opt}: {SEED_OPTIONS[opt]}" if opt in SEED_OPTIONS else "",
        "median": format_seconds(row.median) + (" (noisy)" if row.noisy else ""),
        "IQR": f"±{100 * row.iqr / row.median / 2:.0f}%",
        **{
            f"x opt {k}": f"{row.vs_option[k]:.2f}" if k in row.vs_option else ""
            for k in SEED_OPTIONS
        },
        "peak memory": format_bytes(row.peak_bytes),
        "faults/call": row.faults.text() if row.faults else "",
        "GFLOP/s": f"{row.gflops:.1f}",
        "% roofline": f"{100 * row.roofline_fraction:.0f}%"
        if row.roofline_fraction is not None
        else "",
    }
    if row.record.paired is not None:
        cells["x fastest, paired (95% CI)"] = paired_text(row.record)
    return cells


def within_memory(rows: list[Row], limit: int | None) -> tuple[list[Row], list[Row], list[Row]]:
    """Split ranked rows by a memory limit: (fit, over the limit, peak unknown)."""
    if limit is None:
        return rows, [], []
    fit = [r for r in rows if r.peak_bytes is not None and r.peak_bytes <= limit]
    over = [r for r in rows if r.peak_bytes is not None and r.peak_bytes > limit]
    unknown = [r for r in rows if r.peak_bytes is None]
    return fit, over, unknown


def recommendation(rows: list[Row], memory_limit: int | None = None) -> str:
    """One sentence: the winner, its margin, its memory, and how the seed's options fare;
    then, where a sharedconv layer runs the winner, the line that puts it in a model.

    With ``memory_limit`` (bytes), the winner is the fastest strategy whose measured peak fits,
    and the sentence names the faster ones that do not fit (and those of unknown peak)."""
    text = _sentence(rows, memory_limit)
    chosen = rows if memory_limit is None else within_memory(rows, memory_limit)[0]
    line = in_your_model(chosen[0].record) if chosen else None
    return text + (f" In your model: {line}." if line else "")


def in_your_model(record: CaseRecord) -> str | None:
    """The layer call that runs ``record``'s strategy on its problem (``layers.advice``)."""
    from sharedconv.layers.advice import in_your_model as advice

    try:
        problem = parse_problem(record.problem or "")
    except (ProblemError, ValueError, TypeError):
        return None
    return advice(record.backend, record.strategy, problem)


def _sentence(rows: list[Row], memory_limit: int | None) -> str:
    if not rows:
        return "No strategy was timed for this problem."
    if memory_limit is not None:
        fit, over, unknown = within_memory(rows, memory_limit)
        limit = format_bytes(memory_limit)
        if not fit:
            return (
                f"No strategy's measured peak fits in {limit}"
                + (
                    f" (the lightest: {min(over, key=lambda r: r.peak_bytes).label}, "
                    f"{format_bytes(min(r.peak_bytes for r in over))})"
                    if over
                    else ""
                )
                + (f"; {len(unknown)} of unknown peak" if unknown else "")
                + "."
            )
        best_fit = fit[0]
        faster_over = [r for r in over if r.median < best_fit.median]
        faster_unknown = [r for r in unknown if r.median < best_fit.median]
        text = _sentence(fit, None).removesuffix(".")
        if faster_over:
            names = ", ".join(f"{r.label} ({format_bytes(r.peak_bytes)})" for r in faster_over[:3])
            more = f" and {len(faster_over) - 3} more" if len(faster_over) > 3 else ""
            text += f". Within {limit}; faster but over the limit: {names}{more}"
        elif not faster_unknown:
            text += f". Within {limit}, and the fastest overall"
        else:
            text += f". Within {limit}"
        if faster_unknown:
            text += f"; faster, peak unknown: {', '.join(r.label for r in faster_unknown[:3])}"
        return text + "."
    best = rows[0]
    text = f"Use {best.label}: {format_seconds(best.median)}"
    if len(rows) > 1:
        from .interleave import paired_between

        paired = paired_between(best.record, rows[1].record)
        timing = best.record.timing
        how = (
            f"timed interleaved, in {len(timing.rounds)} rounds"
            if timing is not None and timing.rounds
            else "timed interleaved"
        )
        if paired is None:
            text += (
                f", {rows[1].median / best.median:.2f}x faster than the runner-up {rows[1].label}"
            )
        elif paired[1] <= 1.0 <= paired[2]:
            text += (
                f"; indistinguishable from the runner-up {rows[1].label} here (ratio {paired[0]:.3f}, "
                f"95% CI {paired[1]:.3f}-{paired[2]:.3f}, {how})"
            )
        else:
            text += (
                f", {paired[0]:.2f}x faster than the runner-up {rows[1].label} (95% CI "
                f"{paired[1]:.2f}-{paired[2]:.2f}, {how})"
            )
    if best.peak_bytes is not None:
        text += f", peak {format_bytes(best.peak_bytes)}"
    else:
        why = (memory_unknown_reason(best.record) or "").split(":")[0]
        text += f", peak memory unknown ({why})"
    # what is said of the recommended strategy's own time, before the other options
    warning = best.faults.warning() if best.faults else None
    if warning:
        text += f" ({warning})"
    timing = best.record.timing
    if timing and timing.unsteady and timing.round_medians and timing.round_spread is not None:
        text += f" (noisy: the medians of its {len(timing.round_medians)} rounds differ by {timing.round_spread:.0%})"
    elif best.noisy:
        text += " (noisy: IQR over 10% of the median)"
    own = best.record.seed_option
    if own in SEED_OPTIONS:
        text += f"; it is the seed's option {own} ({SEED_OPTIONS[own]})"
    opts = [
        f"option {k} ({SEED_OPTIONS[k]}) {v:.1f}x slower"
        for k, v in sorted(best.vs_option.items())
        if v > 0 and k != own
    ]
    if opts:
        text += "; vs the seed's " + ("other options: " if own in SEED_OPTIONS else "options: ")
        text += ", ".join(opts)
    return text + "."


def _features(p: ConvProblem) -> list[float]:
    return [math.log2(v) for v in (p.B, p.C, p.H, p.W, p.N, p.KH, p.KW)]


def nearest_problem(target: ConvProblem, measured: Iterable[str]) -> tuple[str | None, float]:
    """The measured problem closest to ``target`` (log-size distance; stride, dilation,
    padding, bias and dtype must match, or cost a large penalty). Returns (text, distance)."""
    best: tuple[str | None, float] = (None, math.inf)
    tf = _features(target)
    for text in set(measured):
        try:
            p = ConvProblem.from_dict(_parse(text))
        except (ProblemError, KeyError, ValueError):
            continue
        d = math.sqrt(sum((a - b) ** 2 for a, b in zip(tf, _features(p), strict=True)))
        for attr in ("stride", "dilation", "padding", "bias", "dtype"):
            if getattr(p, attr) != getattr(target, attr):
                d += 10
        if d < best[1]:
            best = (text, d)
    return best


def how_near(target: ConvProblem, measured: str) -> str:
    """What separates ``target`` from a measured problem, in words: each size that differs,
    with the factor, and each setting that differs (a reader weighs an answer by it)."""
    try:
        other = ConvProblem.from_dict(_parse(measured))
    except (ProblemError, KeyError, ValueError):
        return "not comparable (the measured problem does not parse)"
    parts = []
    for name in ("B", "C", "H", "W", "N", "KH", "KW"):
        want, have = getattr(target, name), getattr(other, name)
        if want != have:
            factor = max(want, have) / min(want, have)
            parts.append(
                f"{name} {have} instead of {want} ({factor:.3g}x {'smaller' if have < want else 'larger'})"
            )
    for name in ("stride", "dilation", "padding", "bias", "dtype"):
        want, have = getattr(target, name), getattr(other, name)
        if want != have:
            parts.append(f"{name} {have} instead of {want}")
    if not parts:
        return "the same problem"
    volume = (other.B * other.C * other.H * other.W * other.N) / (
        target.B * target.C * target.H * target.W * target.N
    )
    text = "it differs in " + "; ".join(parts)
    if volume != 1:
        text += f"; its output is {volume:.3g}x the size of yours"
    return text


def _parse(text: str) -> dict[str, Any]:
    from sharedconv.backends.problem import parse_problem

    return parse_problem(text).to_dict()
