"""The ``sharedconv`` command line.

Bad input ends with a message that names the problem and the fix, and exit code 2; no
command imports a framework in this process (workers do).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from sharedconv.backends.registry import BackendLoadError, load_backend
from sharedconv.backends.suites import load_suite, suite_names

from . import allocators
from .cli_options import (
    CONTEXT,
    RESULTS_OPTION,
    SECONDS,
    Executor,
    Finite,
    Selection,
    backends_from,
    executor_options,
    results_root,
    selection_options,
)
from .records import CaseRecord, RunMeta, as_record


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
    records: list[CaseRecord] = []

    def collect(record: dict[str, Any]) -> None:
        records.append(typed := as_record(record))
        if not as_json and typed.failed:
            click.echo(f"  FAIL {typed.case}: {typed.reason or ''}", err=True)

    if executor is not None and executor.kind == "ray":
        from .cluster import ClusterError, execute_on_cluster

        try:
            execute_on_cluster(plan, collect, address=executor.address, selector=executor.nodes)
        except ClusterError as e:
            raise click.UsageError(str(e)) from None
    else:
        execute(plan, collect)
    if as_json:
        click.echo(json.dumps([r.to_dict() for r in records], indent=1))
    else:
        print_tables(verify_table(records, detailed=verbose or len(records) <= 60))
        n_bad = len(failed(records))
        n_pass = sum(r.status == "pass" for r in records)
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
    "machine one worker process can run much slower than the next, which a single round cannot show. "
    "With --interleave: each round times every problem's candidates together in fresh workers, "
    "and a ratio is the geometric mean of the rounds' paired ratios, its 95% interval over the rounds.",
)
@click.option(
    "--interleave",
    is_flag=True,
    help="Time each problem's candidates together: every framework's worker keeps its prepared "
    "strategies, and timed turns go round all of them in a new random order each cycle, so a slow "
    "spell of the machine hits them alike. Each case then stores its ratio to the problem's fastest "
    "with a 95% interval (docs/harness-benchmark.md shows when it helps).",
)
@click.option(
    "--isolate",
    is_flag=True,
    help="Run every case in a worker process of its own. Its first call then meets the framework "
    "with empty memory pools, so the first-call memory reading is a cold, independent check of "
    "the case's peak (docs/memory.md), at the price of one worker start per case (seconds for "
    "TensorFlow).",
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
    isolate: bool,
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

    root = results_root(results)
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
        plan = plan_from_meta(RunMeta.from_dict(writer.meta))
        if executor is None:  # a cluster run goes on on its cluster
            executor = Executor.from_meta(writer.meta.get("executor"))
    else:
        if interleave and isolate:
            raise click.UsageError(
                "--interleave keeps each framework's worker alive with all its candidates, "
                "--isolate gives each case a worker of its own: choose one"
            )
        if executor is not None and executor.kind == "ray" and (interleave or rounds > 1):
            raise click.UsageError(
                "--executor ray runs each case on one node, once: drop --interleave and --rounds "
                "(a node's cases cannot be timed together with another node's)"
            )
        plan = sel.plan(
            rounds=rounds,
            interleave=interleave,
            isolate=isolate,
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
            stored.meta,
            limit=top or None,
        )
    )
    print_tables(skip_summary(records))
    n_timed = sum(1 for r in records if r.timed)
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

    runs, skipped = find_runs([results_root(results)])
    for run in runs:
        counts: dict[str, int] = {}
        for r in run.cases:
            counts[r.status.value] = counts.get(r.status.value, 0) + 1
        summary = ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
        click.echo(f"{run.run_id}  [{run.meta.status}]  {run.meta.suite or 'ad hoc'}: {summary}")
    for line in skipped + [w for run in runs for w in run.warnings]:
        click.echo(f"skipped: {line}", err=True)
    if not runs:
        click.echo(f"no runs in {results_root(results)}; make one with `sharedconv run`", err=True)


def _add_commands() -> None:
    """The commands that answer from stored runs, the tools, and the layers live in modules
    of their own; this file keeps measuring (backends, verify, run)."""
    from sharedconv.layers.cli import layers_group

    from .cli_answers import compare_cmd, recommend_cmd, seed_cmd
    from .cli_report import report_cmd
    from .cli_tools import dashboard_cmd, import_cmd, pytest_bench_cmd
    from .gpu_check import gpu_check_cmd

    for command in (
        recommend_cmd,
        compare_cmd,
        seed_cmd,
        report_cmd,
        pytest_bench_cmd,
        import_cmd,
        dashboard_cmd,
        gpu_check_cmd,
        layers_group,
    ):
        cli.add_command(command)


_add_commands()


def main() -> None:
    cli(prog_name="sharedconv")


if __name__ == "__main__":
    main()
