"""`sharedconv seed`: the question this project grew from, answered on this machine.

With N filters of shape (K, K, 1) shared across the channels of a many-channel image, which
Keras construction is best in speed and memory: (1) Conv3D with a (1, K, K) kernel,
(2) TimeDistributed(Conv2D) over the channels, (3) split the channels and call one shared
Conv2D on each? The original experiment loaded the same weights into options 1 and 2,
asserted equal outputs and timed ``predict`` on (10, 3, 200, 200, 1) with 20 filters of 5x5.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from .records import CaseRecord, RunMeta
from .summary import format_bytes, format_seconds, peak_bytes

OPTIONS = {1: "Conv3D (1,K,K)", 2: "TimeDistributed(Conv2D)", 3: "split + shared Conv2D"}
STRATEGIES = ("conv3d", "time_distributed", "functional_split")
SEED_SHAPE = "B=10,C=3,H=200,W=200,N=20,K=5"


def seed_strategies(with_predict: bool = True) -> list[str]:
    from sharedconv.backends.keras_backend import TABLE

    names = list(STRATEGIES)
    if with_predict:
        names += [s.name for s in TABLE.strategies if s.form == "predict" and s.base in names]
    return names


def through_predict(record: CaseRecord) -> bool:
    """Whether a record timed ``model.predict``: its tag (every Keras record carries its
    strategy's tags), or, in records from before tags, its name."""
    if record.has("tags"):
        return "predict" in record.tags
    return record.strategy.endswith("_predict")


def rows(records: Iterable[CaseRecord]) -> list[dict[str, Any]]:
    """One row per backend, allocator, option and call path, with agreement and
    bit-identity (option 1 under the same backend and allocator)."""
    out = []
    by_backend: dict[tuple[str, str], list[CaseRecord]] = defaultdict(list)
    for r in records:
        by_backend[(r.backend, r.malloc_name)].append(r)
    for (backend, malloc), group in by_backend.items():
        digests = {(through_predict(r), r.seed_option): r.output_digest for r in group}
        for r in sorted(group, key=lambda r: (r.mode, through_predict(r), r.seed_option or 9)):
            predict = through_predict(r)
            ref = digests.get((predict, 1))
            stats = r.timing.stats if r.timing is not None else None
            out.append(
                {
                    "backend": backend,
                    "allocator": malloc,
                    "option": r.seed_option,
                    "strategy": r.strategy,
                    "call path": "predict" if predict else "compiled call",
                    "mode": r.mode,
                    "status": r.status.value,
                    "error": r.worst_error(),
                    "bit-identical to option 1": (r.output_digest == ref)
                    if ref and r.output_digest
                    else None,
                    "median_s": r.median,
                    "iqr_s": stats.iqr if stats is not None else None,
                    "peak_bytes": peak_bytes(r),
                    "reason": r.reason or "",
                }
            )
    return out


def memory_verdict(group: list[dict[str, Any]]) -> str:
    """Memory's half of a verdict, for options ranked fastest first: which is lightest, and
    what choosing it costs in time (or that both halves agree)."""
    known = [r for r in group if r["peak_bytes"]]
    if len(known) < 2:
        return " Peak memory unknown for the other options." if len(group) > 1 else ""
    light = min(known, key=lambda r: r["peak_bytes"])
    best = group[0]
    if light is best or (best["peak_bytes"] and light["peak_bytes"] >= 0.95 * best["peak_bytes"]):
        return " It is also the lightest, or within 5% of it: speed and memory agree."
    return (
        f" The lightest is option {light['option']} ({format_bytes(light['peak_bytes'])} against "
        f"{format_bytes(best['peak_bytes']) if best['peak_bytes'] else 'unknown'}), "
        f"{light['median_s'] / best['median_s']:.2f}x slower."
    )


def verdicts(table: list[dict[str, Any]], device: str = "CPU") -> list[str]:
    """One sentence per backend and call path: the fastest option, its margin and memory."""
    sentences = []
    groups: dict[tuple[str, str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in table:
        if row["median_s"] and row["option"]:
            groups[(row["backend"], row["allocator"], row["call path"], row["mode"])].append(row)
    for (backend, malloc, path, mode), group in groups.items():
        group.sort(key=lambda r: r["median_s"])
        best = group[0]
        others = []
        for other in group[1:]:
            speed = other["median_s"] / best["median_s"]
            mem = ""
            if best["peak_bytes"] and other["peak_bytes"]:
                mem = f", {best['peak_bytes'] / other['peak_bytes']:.2g}x the memory"
            others.append(f"{speed:.2f}x faster than option {other['option']}{mem}")
        where = f"on this {device} with {backend} ({path}, {mode}, {malloc} allocator)"
        if others:
            sentences.append(
                f"{where}, option {best['option']} ({OPTIONS[best['option']]}) is fastest at "
                f"{format_seconds(best['median_s'])}: "
                + "; ".join(others)
                + "."
                + memory_verdict(group)
            )
        else:
            sentences.append(
                f"{where}, only option {best['option']} was timed ({format_seconds(best['median_s'])})."
            )
    return sentences


def markdown(table: list[dict[str, Any]], sentences: list[str], problem: str, meta: RunMeta) -> str:
    cpu = meta.machine.cpu_model if meta.machine and meta.machine.cpu_model else "?"
    lines = [
        f"### {problem}",
        "",
        f"Machine: {cpu}, {meta.threads} threads; run `{meta.run_id}`.",
        "",
        "| backend | allocator | option | call path | mode | agrees with oracle (error) | bit-identical to option 1 | median | IQR | peak memory |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in table:
        agree = (
            f"{r['status']} ({r['error']:.1e})"
            if r["error"] is not None
            else f"{r['status']}: {r['reason']}"
        )
        ident = {True: "yes", False: "no", None: ""}[r["bit-identical to option 1"]]
        lines.append(
            f"| {r['backend']} | {r['allocator']} | {r['option']}: {OPTIONS.get(r['option'], '')} | {r['call path']} | {r['mode']} | {agree} | {ident} | "
            f"{format_seconds(r['median_s'])} | {format_seconds(r['iqr_s'])} | {format_bytes(r['peak_bytes']) if r['median_s'] else ''} |"
        )
    lines += ["", *[f"- {s[0].upper()}{s[1:]}" for s in sentences], ""]
    return "\n".join(lines)


def console_table(problem: str, table_rows: list[dict[str, Any]]):
    """The terminal's table of one problem (strings from records are data, not markup)."""
    from rich.table import Table
    from rich.text import Text

    t = Table(title=f"The seed question on {problem}", title_justify="left")
    for col in (
        "backend", "allocator", "option", "call path", "mode", "oracle",
        "bit-identical to opt 1", "median", "IQR", "peak memory",
    ):  # fmt: skip
        t.add_column(col)
    for r in table_rows:
        oracle = (
            f"{r['status']} ({r['error']:.1e})"
            if r["error"] is not None
            else f"{r['status']}: {r['reason'][:60]}"
        )
        t.add_row(
            *(Text(str(v)) for v in (r["backend"], r["allocator"])),
            f"{r['option']}: {OPTIONS.get(r['option'], '')}",
            r["call path"],
            r["mode"],
            Text(oracle),
            {True: "yes", False: "[yellow]no[/]", None: ""}[r["bit-identical to option 1"]],
            format_seconds(r["median_s"]),
            format_seconds(r["iqr_s"]),
            format_bytes(r["peak_bytes"]) if r["median_s"] else "",
        )
    return t


def write_page(path, sections: list[str], command: str, mallocs: list[str]) -> None:
    """docs/seed-question.md: the question, the command that answered it, the allocators it
    measured under (each with how to get it), then one section per problem."""
    from pathlib import Path

    from . import allocators

    described = "\n".join(
        f"- `{m}`: {allocators.get(m).summary}"
        + (f" (for your own script: `{how}`)" if (how := allocators.get(m).how_to_get()) else "")
        for m in mallocs
    )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    page = PAGE_HEADER.format(command=command, allocators=described)
    path.write_text(page + "\n".join(sections))


PAGE_HEADER = """# The seed question, answered on this machine

> With N filters of shape (5, 5, 1) shared across the channels of an image with many channels,
> which is best in speed and memory: (1) a `Conv3D` with kernel `(1, K, K)` on input `(B, C, H, W, 1)`,
> (2) `TimeDistributed(Conv2D)` with the channels as "time", or (3) the functional API, splitting
> the input per channel and calling one shared `Conv2D` on each piece?

The question was asked in 2017 against Keras 2 on TensorFlow or Theano.
Theano is no longer developed (its last release was in 2020), and Keras 2's multi-backend API is
gone; Keras 3 runs the same three constructions on TensorFlow, JAX and PyTorch, and that is what
is measured here.

The original experiment loaded the same weights into options 1 and 2, asserted equal outputs and
timed `predict` on `(10, 3, 200, 200, 1)` with 20 filters of 5x5, on CPU. This page is written by
`{command}`; every number below comes from that command, not from a hand (the run is committed as
results/reference-seed). "compiled call" is the model called under the backend's compiled
function (`tf.function`, `jax.jit`, eager torch); "predict" is `model.predict`, which adds Keras's
batching and a host copy. Each option was checked against the float64 oracle; "bit-identical"
compares its output with option 1's (same backend and allocator), bit for bit, as the original
assertion did.

Every case was measured under each of these C allocators in turn (docs/allocator.md shows why
this decides the answer: under glibc's defaults a large output is fresh memory, page faults
included, on every call):

{allocators}

"""
