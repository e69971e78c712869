"""The ``sharedconv`` command line.

Bad input ends with a message that names the problem and the fix, and exit code 2; no
command imports a framework in this process (workers do).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click
from sharedconv.backends.contract import DEVICES
from sharedconv.backends.problem import ProblemError, parse_problems
from sharedconv.backends.registry import BackendLoadError, load_backend
from sharedconv.backends.suites import load_suite, suite_names

from . import allocators
from .cli_options import (
    MALLOC_OPTION,
    SECONDS,
    Executor,
    Finite,
    Selection,
    backends_from,
    device_from,
    executor_options,
    keras_backends_from,
    mallocs_from,
    modes_from,
    problems_from,
    selection_options,
    threads_from,
)
from .records import is_failed
from .worker import default_threads

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
RESULTS_OPTION = click.option(
    "--results",
    metavar="DIR",
    help="Folder of runs (default: ./results, which holds the reference runs).",
)


@click.group(context_settings=CONTEXT)
@click.version_option(package_name="sharedconv")
def cli() -> None:
    """Which way of computing a channel-shared 2-D convolution is fastest and lightest in
    TensorFlow, PyTorch and JAX on this machine, and do they all agree?"""


# ---- backends -----------------------------------------------------------------------------
@cli.command("backends")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def backends_cmd(as_json: bool) -> None:
    """List every registered backend: availability, versions and strategies."""
    from sharedconv.backends.registry import backend_names, describe_registered

    from .discovery import faults
    from .report import backends_table

    rows = describe_registered(faults(backend_names()))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    backends_table(rows)


@cli.command("suites")
def suites_cmd() -> None:
    """List the named suites and their problems."""
    for name in suite_names():
        suite = load_suite(name)
        budget = f", {suite.budget:g} s per case" if suite.budget else ""
        count = f"{len(suite.problems)} problem{'s' if len(suite.problems) != 1 else ''}"
        click.echo(f"{name} ({count}{budget}): {suite.description}")


@cli.command("strategies")
@click.option(
    "--backends", "-b", metavar="LIST", help="Comma-separated backend names (default: all)."
)
def strategies_cmd(backends: str | None) -> None:
    """Describe every strategy: layouts, seed option and what its timed call contains."""
    from rich.console import Console

    from .discovery import faults
    from .report import strategies_table

    names = backends_from(backends)
    crashing = faults(names)
    entries: list[tuple[str, Any]] = []
    for name in names:
        try:
            if name in crashing:
                raise BackendLoadError(crashing[name])
            entries.append((name, load_backend(name)))
        except BackendLoadError as e:
            entries.append((name, e))
    Console().print(strategies_table(entries))


# ---- verify -------------------------------------------------------------------------------
@cli.command("verify")
@selection_options(default_suite="conformance")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the records as JSON instead of tables."
)
@executor_options
def verify_cmd(sel: Selection, as_json: bool, executor: Executor | None) -> None:
    """Check strategies against the float64 oracle, forward and gradients.

    Exits 0 only when nothing failed (skipped and unavailable cases are not failures).
    """
    from .execute import execute
    from .report import failed, print_tables, verify_table

    plan = sel.plan()
    verbose = sel.verbose
    records: list[dict[str, Any]] = []

    def collect(record: dict[str, Any]) -> None:
        records.append(record)
        if not as_json and is_failed(record):
            click.echo(f"  FAIL {record['case']}: {record.get('reason', '')}", err=True)

    if executor is not None and executor.kind == "ray":
        from .cluster import ClusterError, execute_on_cluster

        try:
            execute_on_cluster(plan, collect, address=executor.address, selector=executor.nodes)
        except ClusterError as e:
            raise click.UsageError(str(e)) from None
    else:
        execute(plan, collect)
    if as_json:
        click.echo(json.dumps(records, indent=1))
    else:
        print_tables(verify_table(records, detailed=verbose or len(records) <= 60))
        n_bad = len(failed(records))
        n_pass = sum(r["status"] == "pass" for r in records)
        click.echo(
            f"{n_pass} passed, {n_bad} failed, {len(records) - n_pass - n_bad} skipped or unavailable"
        )
    sys.exit(1 if failed(records) else 0)


# ---- run ----------------------------------------------------------------------------------
def options_given(ctx: click.Context, keep: tuple[str, ...]) -> list[str]:
    """The options typed on the command line, other than ``keep``, by their flag."""
    from click.core import ParameterSource

    flags = {p.name: p.opts[0] for p in ctx.command.params}
    return [
        flags[name]
        for name in ctx.params
        if name not in keep and ctx.get_parameter_source(name) is ParameterSource.COMMANDLINE
    ]


def _results_root(results: str | None) -> Path:
    return Path(results) if results else Path("results")


@cli.command("run")
@selection_options(default_suite="smoke")
@click.option(
    "--budget",
    type=SECONDS,
    help="Seconds of steady-state sampling per case (default: 2, or the suite's own, e.g. "
    "0.5 for smoke; see `sharedconv suites`).",
)
@click.option(
    "--precision",
    type=Finite(0, 1),
    default=0.02,
    show_default=True,
    help="Stop a case when the median's 95% CI is within ± this fraction.",
)
@click.option("--min-samples", type=click.IntRange(2, 100_000), default=5, show_default=True)
@click.option(
    "--time-anyway",
    is_flag=True,
    help="Also time cases that disagree with the oracle (they stay marked as mismatches).",
)
@RESULTS_OPTION
@click.option("--run-id", metavar="ID", help="Name of the new run (default: date-host-suite).")
@click.option(
    "--resume", metavar="RUN_ID", help="Continue an interrupted run: completed cases are skipped."
)
@click.option(
    "--rounds",
    type=click.IntRange(1, 50),
    default=1,
    show_default=True,
    help="Measure every case this many times, each in a fresh worker, round after round over "
    "the whole run. The case's median is the median of the rounds' medians (one vote per worker "
    "process); a case whose round medians differ by more than 10% is flagged noisy. On a shared "
    "machine one worker process can run much slower than the next, which a single round cannot show.",
)
@click.option(
    "--interleave",
    is_flag=True,
    help="Time each problem's candidates together: every framework's worker keeps its prepared "
    "strategies, and timed turns go round all of them in a new random order each cycle, so a slow "
    "spell of the machine hits them alike. Each case then stores its ratio to the problem's fastest "
    "with a 95%% interval (docs/harness-benchmark.md shows when it helps).",
)
@click.option(
    "--top",
    type=click.IntRange(0, 10_000),
    default=12,
    show_default=True,
    help="Rows per problem in the final tables (0: all).",
)
@executor_options
def run_cmd(
    sel: Selection,
    budget: float | None,
    precision: float,
    min_samples: int,
    time_anyway: bool,
    results: str | None,
    run_id: str | None,
    resume: str | None,
    rounds: int,
    interleave: bool,
    top: int,
    executor: Executor | None,
) -> None:
    """Verify and time a suite over every available backend and strategy; store the run.

    Each case is checked against the float64 oracle first; a disagreeing case is recorded as a
    mismatch and not timed. Results go to RESULTS/<run-id>/ (run.json, cases.jsonl) as each
    case finishes, so an interrupted run loses at most the case in flight (--resume).
    """
    from rich.console import Console
    from rich.markup import escape

    from .cluster import ClusterError
    from .progress import RunProgress
    from .report import print_tables, ranking_tables, skip_summary
    from .runner import plan_from_meta, plan_size, run_plan, start_run
    from .store import RunWriter, StorageFailure, StoreError, read_run

    root = _results_root(results)
    if resume:
        given = options_given(
            click.get_current_context(),
            keep=("resume", "results", "top", "executor", "address", "nodes"),
        )
        if given:
            raise click.UsageError(
                "--resume continues a run with the settings stored in it; drop " + ", ".join(given)
            )
        try:
            writer, done = RunWriter.resume(root, resume)
        except StorageFailure as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except StoreError as e:
            raise click.BadParameter(str(e), param_hint="--resume") from None
        plan = plan_from_meta(writer.meta)
        if executor is None:  # a cluster run goes on on its cluster
            executor = Executor.from_meta(writer.meta.get("executor"))
    else:
        if interleave and rounds > 1:
            raise click.UsageError(
                "--interleave and --rounds are two answers to the same noise; choose one"
            )
        if executor is not None and executor.kind == "ray" and (interleave or rounds > 1):
            raise click.UsageError(
                "--executor ray runs each case on one node, once: drop --interleave and --rounds "
                "(a node's cases cannot be timed together with another node's)"
            )
        plan = sel.plan(
            rounds=rounds,
            interleave=interleave,
            timing={
                "budget": budget if budget is not None else sel.budget(),
                "precision": precision,
                "min_samples": min_samples,
                "time_anyway": time_anyway,
            },
        )
        try:
            writer = start_run(plan, root, sel.suite_label(), run_id, executor=executor)
        except StorageFailure as e:
            click.echo(f"error: {e}", err=True)
            sys.exit(1)
        except StoreError as e:
            raise click.BadParameter(str(e), param_hint="--run-id") from None
        done = set()
    console = Console(stderr=True)
    total = plan_size(plan) - len(done)
    console.print(
        f"run [bold]{escape(writer.meta['run_id'])}[/]: {total} cases"
        + (f" x {plan.rounds} rounds" if plan.rounds > 1 else "")
        + f", {plan.threads} threads, {escape(allocators.choice_note(plan.mallocs, sel.malloc))}, "
        f"writing {escape(str(writer.folder))}/cases.jsonl",
        highlight=False,
    )
    with RunProgress(console, total) as progress:
        try:
            records = run_plan(plan, writer, done, progress.on_record, executor)
        except StorageFailure as e:
            console.print(f"error: {e}; the run is interrupted (resumable)", markup=False)
            sys.exit(1)
        except ClusterError as e:
            console.print(f"error: {e}; the run is interrupted (resumable)", markup=False)
            sys.exit(2)
        except KeyboardInterrupt:
            console.print(
                f"interrupted; continue with: sharedconv run --resume {writer.meta['run_id']}",
                markup=False,
            )
            sys.exit(130)
    stored = read_run(writer.folder)
    print_tables(
        ranking_tables(
            stored.cases,
            writer.meta.get("roofline"),
            limit=top or None,
            machines=writer.meta.get("machines"),
        )
    )
    print_tables(skip_summary(records))
    n_timed = sum(1 for r in records if r.get("timed"))
    failures = progress.failures
    click.echo(
        f"{n_timed} cases timed, {failures} failed, {len(records) - n_timed - failures} "
        f"skipped/unavailable/untimed; results in {writer.folder}"
    )
    sys.exit(1 if failures else 0)


@cli.command("runs")
@RESULTS_OPTION
def runs_cmd(results: str | None) -> None:
    """List the stored runs."""
    from .store import find_runs

    runs, skipped = find_runs([_results_root(results)])
    for run in runs:
        counts = {}
        for r in run.cases:
            counts[r["status"]] = counts.get(r["status"], 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        click.echo(
            f"{run.run_id}  [{run.meta.get('status')}]  {run.meta.get('suite') or 'ad hoc'}: {summary}"
        )
    for line in skipped + [w for run in runs for w in run.warnings]:
        click.echo(f"skipped: {line}", err=True)
    if not runs:
        click.echo(f"no runs in {_results_root(results)}; make one with `sharedconv run`", err=True)


@cli.command("recommend")
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
        writer = start_run(plan, _results_root(results), None)
        records = run_plan(plan, writer)
        print_tables(ranking_tables(records, writer.meta.get("roofline"), memory_limit=limit))
        return
    from .recommend import NoAnswer, Question, answer

    runs, skipped = find_runs([_results_root(results)])  # results/ holds the reference runs too
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
        click.echo(f"From run {found.run.label}, started {found.run.meta.get('started', '?')}.")
    if found.machine:
        from .recommend import machine_description

        about = machine_description(found.run, found.records[0])
        click.echo(
            f"Timings of machine {found.machine} of that cluster run ({about.get('cpu_model')}, "
            f"{about.get('usable_cores')} cores, host {about.get('hostname')}); --machine picks another."
        )
    print_tables(
        ranking_tables(
            found.records,
            found.run.meta.get("roofline"),
            memory_limit=limit,
            machines=found.run.meta.get("machines"),
        )
    )


@cli.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@RESULTS_OPTION
@click.option(
    "--threshold",
    type=Finite(0, 100),
    default=0.10,
    show_default=True,
    help="Flag cases whose median changed by more than this fraction.",
)
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
    from .store import StoreError, read_run

    runs = []
    for ref in (run_a, run_b):
        path = Path(ref) if Path(ref).is_dir() else _results_root(results) / ref
        try:
            runs.append(read_run(path))
        except StoreError as e:
            raise click.BadParameter(str(e), param_hint="RUN_A/RUN_B") from None
    for run in runs:  # a damaged line is never dropped silently
        for warning in run.warnings:
            click.echo(f"warning: {warning}", err=True)
    if normalize is not None:
        labels = {f"{r.get('backend')}/{r.get('strategy')}" for run in runs for r in run.cases}
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


@cli.command("seed")
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
    writer = start_run(plan, _results_root(results), "seed", None)
    records = run_plan(
        plan,
        writer,
        on_record=lambda r: console.print(f"  {r['case']}: {r['status']}", highlight=False),
    )
    out = Console(width=None if Console().is_terminal else 160)
    docs = []
    for problem in problems:
        table_rows = rows([r for r in records if r["problem"] == problem.to_text()])
        out.print(console_table(problem.to_text(), table_rows))
        sentences = verdicts(table_rows)
        for s in sentences:
            out.print(f"- {s[0].upper()}{s[1:]}", highlight=False, markup=False)
        docs.append(markdown(table_rows, sentences, problem.to_text(), writer.meta))
    click.echo(f"stored as run {writer.meta['run_id']} in {writer.folder}")
    if write_doc:
        write_page(Path(write_doc), docs, writer.meta["command"], plan.mallocs)
        click.echo(f"wrote {write_doc}")


@cli.command(
    "pytest-bench",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, **CONTEXT},
)
@click.option(
    "--backends", "-b", metavar="LIST", help="Backends to benchmark (default: every available one)."
)
@click.option("--path", "show_path", is_flag=True, help="Print where the shipped benchmarks are.")
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def pytest_bench_cmd(backends: str | None, show_path: bool, pytest_args: tuple[str, ...]) -> None:
    """Run the pytest-benchmark suites, one pytest process per backend, and merge the JSON.

    Other arguments go to pytest, e.g. --sharedconv-suite seed --benchmark-json out.json.
    """
    from .pytest_bench import BENCHMARKS, BenchUsageError, run_backends, take_json_option
    from .pytest_bench import pytest_args as with_suite

    if show_path:
        click.echo(BENCHMARKS)
        return
    args, json_out = take_json_option(list(pytest_args))
    try:
        args = with_suite(args)
    except BenchUsageError as e:
        raise click.UsageError(str(e)) from None
    names = [n for n in backends_from(backends) if load_backend(n).available() is None]
    if not names:
        raise click.UsageError(
            "no selected backend is available; `sharedconv backends` shows what to install"
        )
    failed = run_backends(names, args, json_out, echo=lambda m: click.echo(m, err=True))
    if failed:
        click.echo(f"failed: {', '.join(failed)}", err=True)
        sys.exit(1)


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@RESULTS_OPTION
@click.option("--run-id", metavar="ID", help="Name of the new run (default: date-host-import).")
def import_cmd(file: str, results: str | None, run_id: str | None) -> None:
    """Turn a pytest-benchmark JSON file with sharedconv's extra_info into a run the
    dashboard shows."""
    from .bench_import import ImportRefused, import_file
    from .store import StoreError, new_run_id

    try:
        writer, n, foreign = import_file(
            Path(file),
            _results_root(results),
            run_id if run_id is not None else new_run_id("import"),
        )
    except ImportRefused as e:
        raise click.BadParameter(str(e), param_hint="FILE") from None
    except StoreError as e:
        raise click.BadParameter(str(e), param_hint="--run-id") from None
    note = (
        f" ({foreign} foreign benchmark(s) without sharedconv's extra_info skipped)"
        if foreign
        else ""
    )
    click.echo(f"imported {n} case(s) into {writer.folder}{note}")


@cli.command("dashboard")
@RESULTS_OPTION
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--allow-remote-run",
    is_flag=True,
    help="Allow the Run page to start measurements when listening beyond 127.0.0.1.",
)
def dashboard_cmd(results: str | None, port: int, host: str, allow_remote_run: bool) -> None:
    """Open the Streamlit dashboard on the stored runs (Ctrl-C stops it)."""
    from sharedconv.dashboard.launch import LaunchError, check, launch

    try:
        check(results)
    except LaunchError as e:
        raise click.UsageError(str(e)) from None
    click.echo(f"sharedconv dashboard on http://{host}:{port} (Ctrl-C to stop)")
    launch(results, host, port, allow_remote_run)


def _add_commands() -> None:
    from sharedconv.layers.cli import layers_group

    from .cli_report import report_cmd

    cli.add_command(layers_group)
    cli.add_command(report_cmd)


_add_commands()


def main() -> None:
    cli(prog_name="sharedconv")


if __name__ == "__main__":
    main()
