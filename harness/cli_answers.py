"""Commands that answer from stored runs: ``recommend``, ``compare`` and ``seed`` (which
measures the seed question's shape when asked)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from sharedconv.backends.contract import DEVICES
from sharedconv.backends.problem import ProblemError, parse_problems

from . import allocators
from .cli_options import (
    MALLOC_OPTION,
    RESULTS_OPTION,
    SECONDS,
    THRESHOLD_OPTION,
    Finite,
    backends_from,
    device_from,
    keras_backends_from,
    mallocs_from,
    modes_from,
    problems_from,
    read_run_arg,
    results_root,
    threads_from,
)
from .records import RunMeta
from .worker import default_threads


@click.command("recommend")
@click.option(
    "--shape",
    "shape",
    required=True,
    metavar="TEXT",
    help="The problem, e.g. 'B=10,C=100,H=200,N=20,K=5'.",
)
@click.option(
    "--mode", type=click.Choice(["forward", "train"]), default="forward", show_default=True
)
@RESULTS_OPTION
@click.option(
    "--measure",
    is_flag=True,
    help="Measure this problem now (all available backends) instead of looking it up.",
)
@click.option(
    "--budget",
    type=SECONDS,
    default=1.0,
    show_default=True,
    help="With --measure: seconds per case.",
)
@click.option(
    "--device",
    type=click.Choice([*DEVICES, "gpu"]),
    default="cpu",
    show_default=True,
    help="Answer for this device: stored timings from other devices are not used.",
)
@click.option(
    "--memory-limit",
    metavar="SIZE",
    help="Recommend the fastest strategy whose measured peak memory fits, e.g. 2GiB or 512MiB; "
    "the answer names the faster ones that do not fit.",
)
@click.option(
    "--tf32",
    is_flag=True,
    help="On a GPU, also use timings made with TF32 allowed (float32 at about 10-bit precision; "
    "without this flag only full-float32 timings answer).",
)
@MALLOC_OPTION
@click.option(
    "--machine",
    metavar="NAME",
    help="Only timings made on this machine: a machine id of a cluster run (`sharedconv report` "
    "lists them), a host name or a CPU/GPU model (default: this machine's timings where a "
    "cluster run has them; a ranking never mixes machines).",
)
def recommend_cmd(
    shape: str,
    mode: str,
    results: str | None,
    measure: bool,
    budget: float,
    device: str,
    tf32: bool,
    malloc: str | None,
    memory_limit: str | None,
    machine: str | None,
) -> None:
    """Which strategy to use for a problem: from stored results (nearest measured problem,
    said as such) or measured on the spot with --measure. With --malloc, only timings made
    under that allocator answer (or --measure measures under it); with --memory-limit, only
    strategies whose measured peak fits."""
    from .report import print_tables, ranking_tables
    from .store import find_runs
    from .summary import parse_size

    try:
        target = parse_problems(shape)
    except ProblemError as e:
        raise click.BadParameter(str(e), param_hint="--shape") from None
    if len(target) != 1:
        raise click.BadParameter(
            f"give one problem, not a grid of {len(target)}", param_hint="--shape"
        )
    problem = target[0]
    try:
        limit = parse_size(memory_limit) if memory_limit else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--memory-limit") from None
    if measure:
        from .execute import Plan
        from .runner import run_plan, start_run

        plan = Plan(
            backends=backends_from(None),
            problems=[problem],
            modes=[mode],
            device=device_from(device),
            threads=default_threads(),
            mallocs=mallocs_from(malloc),
            timing={"budget": budget, "precision": 0.02, "min_samples": 5},
        )
        writer = start_run(plan, results_root(results), None)
        records = run_plan(plan, writer)
        print_tables(ranking_tables(records, RunMeta.from_dict(writer.meta), memory_limit=limit))
        return
    from .recommend import NoAnswer, Question, answer

    runs, skipped = find_runs([results_root(results)])  # results/ holds the reference runs too
    for line in skipped:
        click.echo(f"skipped: {line}", err=True)
    # --malloc NAME: only timings made under that allocator (default: whichever the run has;
    # the tables name it, with how to get it for your own script)
    only = mallocs_from(malloc)[0] if malloc else None
    question = Question(problem, mode, device_from(device), tf32, only, machine)
    try:
        found = answer(runs, question)
    except NoAnswer as e:
        raise click.UsageError(str(e)) from None
    if not found.exact:
        from .summary import how_near

        click.echo(
            f"{problem.to_text()} was not measured; the nearest measured problem is "
            f"{found.problem} (from run {found.run.run_id}): {how_near(problem, found.problem)}."
        )
        click.echo("Use --measure to time the exact problem on this machine.")
    else:
        click.echo(f"From run {found.run.label}, started {found.run.meta.started or '?'}.")
    if found.machine:
        from .recommend import machine_description

        about = machine_description(found.run, found.records[0])
        click.echo(
            f"Timings of machine {found.machine} of that cluster run ({about.cpu_model}, "
            f"{about.usable_cores} cores, host {about.hostname}); --machine picks another."
        )
    print_tables(ranking_tables(found.records, found.run.meta, memory_limit=limit))


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@RESULTS_OPTION
@THRESHOLD_OPTION
@click.option(
    "--alpha",
    type=Finite(0, 1),
    default=0.05,
    show_default=True,
    help="Significance level of the Mann-Whitney U test.",
)
@click.option(
    "--normalize",
    metavar="BACKEND/STRATEGY",
    help="Compare times relative to this strategy's time on the same problem in the same run "
    "(e.g. torch/fold), so a machine that was slower on one day as a whole is not a regression.",
)
def compare_cmd(
    run_a: str,
    run_b: str,
    results: str | None,
    threshold: float,
    alpha: float,
    normalize: str | None,
) -> None:
    """Compare two runs case by case: ratio of medians (B/A) and a Mann-Whitney U test on the
    raw samples. Exits 1 when a case got slower beyond --threshold with p < --alpha."""
    from rich.console import Console

    from .compare import compare_runs
    from .report import compare_table

    runs = [read_run_arg(run_a, results, "RUN_A"), read_run_arg(run_b, results, "RUN_B")]
    if normalize is not None:
        labels = {r.label for run in runs for r in run.cases}
        if normalize not in labels:
            raise click.BadParameter(
                f"{normalize!r} was timed in neither run; give BACKEND/STRATEGY as the tables "
                "show it, e.g. torch/fold",
                param_hint="--normalize",
            )
    rows = compare_runs(runs[0], runs[1], threshold, alpha, normalize)
    if not rows:
        raise click.UsageError(
            "the two runs have no timed case in common"
            + (f" on a problem where both timed {normalize}" if normalize else "")
        )
    Console().print(compare_table(rows, runs[0].run_id, runs[1].run_id))
    regressions = sum(r["verdict"] == "regression" for r in rows)
    click.echo(
        f"{len(rows)} cases compared, {regressions} regressions, {sum(r['verdict'] == 'improvement' for r in rows)} improvements"
    )
    sys.exit(1 if regressions else 0)


@click.command("seed")
@click.option(
    "--shape",
    "shapes",
    multiple=True,
    metavar="TEXT",
    help="Problem(s) (default: the seed's B=10,C=3,H=200,W=200,N=20,K=5). Repeatable.",
)
@click.option(
    "--backends",
    "-b",
    metavar="LIST",
    help="Keras backends (default: every installed keras-* backend).",
)
@click.option(
    "--mode", type=click.Choice(["forward", "train", "both"]), default="forward", show_default=True
)
@click.option(
    "--no-predict", is_flag=True, help="Time only the compiled call path, not model.predict."
)
@click.option(
    "--budget",
    type=SECONDS,
    default=1.0,
    show_default=True,
    help="Seconds of steady-state sampling per case.",
)
@click.option(
    "--threads",
    type=int,
    help="Threads for every framework (default: the cores this process may use).",
)
@MALLOC_OPTION
@RESULTS_OPTION
@click.option(
    "--write-doc",
    type=click.Path(dir_okay=False),
    help="Also write the answer as Markdown to this file.",
)
def seed_cmd(
    shapes: tuple[str, ...],
    backends: str | None,
    mode: str,
    no_predict: bool,
    budget: float,
    threads: int | None,
    malloc: str | None,
    results: str | None,
    write_doc: str | None,
) -> None:
    """Reproduce the original Keras experiment: the three options with identical weights, their
    agreement with the oracle (and with each other, bit for bit), time, memory and a verdict."""
    from rich.console import Console

    from .execute import Plan
    from .runner import run_plan, start_run
    from .seed import (
        SEED_SHAPE,
        console_table,
        markdown,
        rows,
        seed_strategies,
        verdicts,
        write_page,
    )

    problems = problems_from(shapes or (SEED_SHAPE,), None, None, "seed")
    available = keras_backends_from(backends)
    plan = Plan(
        backends=available,
        problems=problems,
        modes=modes_from(mode),
        strategies=seed_strategies(with_predict=not no_predict),
        threads=threads_from(threads),
        mallocs=mallocs_from(malloc),
        timing={"budget": budget, "precision": 0.02, "min_samples": 5},
        digest=True,
    )
    console = Console(stderr=True)
    console.print(
        f"timing the seed's three options on {', '.join(available)}: {len(problems)} problem(s), "
        f"{plan.threads} threads, {allocators.choice_note(plan.mallocs, malloc)}",
        highlight=False,
    )
    writer = start_run(plan, results_root(results), "seed", None)
    records = run_plan(
        plan,
        writer,
        on_record=lambda r: console.print(f"  {r.case}: {r.status}", highlight=False),
    )
    out = Console(width=None if Console().is_terminal else 160)
    docs = []
    for problem in problems:
        table_rows = rows([r for r in records if r.problem == problem.to_text()])
        out.print(console_table(problem.to_text(), table_rows))
        sentences = verdicts(table_rows)
        for s in sentences:
            out.print(f"- {s[0].upper()}{s[1:]}", highlight=False, markup=False)
        docs.append(
            markdown(table_rows, sentences, problem.to_text(), RunMeta.from_dict(writer.meta))
        )
    click.echo(f"stored as run {writer.meta['run_id']} in {writer.folder}")
    if write_doc:
        write_page(Path(write_doc), docs, writer.meta["command"], plan.mallocs)
        click.echo(f"wrote {write_doc}")
