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
from sharedconv.backends.contract import DEVICES, MODES
from sharedconv.backends.problem import DTYPES, ConvProblem, ProblemError, parse_problems
from sharedconv.backends.registry import (
    BackendLoadError,
    UnknownBackendError,
    list_specs,
    load_backend,
    parse_backend_list,
)
from sharedconv.backends.suites import SuiteError, load_suite, suite_names

from . import allocators
from .worker import default_threads

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


# ---- shared option parsing ----------------------------------------------------------------
def problems_from(
    shapes: tuple[str, ...], suite: str | None, dtype: str | None, default_suite: str
) -> list[ConvProblem]:
    if shapes and suite:
        raise click.UsageError("give either --shape or --suite, not both")
    problems: list[ConvProblem] = []
    if shapes:
        for text in shapes:
            if dtype and "dtype=" not in text:
                text = f"{text},dtype={dtype}"
            try:
                problems.extend(parse_problems(text))
            except ProblemError as e:
                raise click.BadParameter(str(e), param_hint="--shape") from None
        return list(dict.fromkeys(problems))
    problems = []
    for name in (suite or default_suite).split(","):
        try:
            problems.extend(load_suite(name.strip(), dtype).problems)
        except SuiteError as e:
            raise click.BadParameter(str(e), param_hint="--suite") from None
    return list(dict.fromkeys(problems))


DEFAULT_BUDGET = 2.0


def suite_budget(shapes: tuple[str, ...], suite: str | None, default_suite: str) -> float:
    """Seconds per case when --budget is not given: the largest the chosen suites declare,
    2 s for suites that declare none and for --shape grids."""
    if shapes:
        return DEFAULT_BUDGET
    budgets = [
        load_suite(name.strip()).budget or DEFAULT_BUDGET
        for name in (suite or default_suite).split(",")
    ]
    return max(budgets)


def backends_from(text: str | None) -> list[str]:
    try:
        return parse_backend_list(text)
    except UnknownBackendError as e:
        raise click.BadParameter(str(e), param_hint="--backends") from None


def strategies_from(text: str | None, backends: list[str]) -> list[str] | None:
    if not text:
        return None
    wanted = [s.strip() for s in text.split(",") if s.strip()]
    known: set[str] = set()
    for name in backends:
        try:
            known.update(s.name for s in load_backend(name).strategies)
        except BackendLoadError:
            continue
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise click.BadParameter(
            f"no selected backend has strategy {', '.join(unknown)}; valid: {', '.join(sorted(known))}",
            param_hint="--strategies",
        )
    return wanted


def modes_from(mode: str) -> list[str]:
    return list(MODES) if mode == "both" else [mode]


def device_from(device: str) -> str:
    return "cuda" if device == "gpu" else device


def threads_from(threads: int | None) -> int:
    if threads is None:
        return default_threads()
    if threads < 1:
        raise click.BadParameter(f"must be >= 1, got {threads}", param_hint="--threads")
    return threads


def mallocs_from(text: str | None) -> list[str]:
    try:
        return allocators.parse(text)
    except allocators.AllocatorError as e:
        raise click.BadParameter(str(e), param_hint="--malloc") from None


MALLOC_OPTION = click.option(
    "--malloc",
    metavar="NAME[,NAME]",
    default=None,
    help="The workers' C allocator, or several to measure every case under each in turn: "
    "jemalloc (default; purging off), tcmalloc, glibc-tuned (no mmap for large blocks, one "
    "arena), system (your environment as it is: the out-of-the-box number), fixed (the first "
    "wave's glibc thresholds). Default: jemalloc, or glibc-tuned when libjemalloc is not "
    "installed. Under glibc's defaults a large output is fresh memory, page faults included, on "
    "every call; see docs/allocator.md. Recorded with the run and every case.",
)


def selection_options(default_suite: str):
    """The options every measuring command shares."""

    def decorate(f):
        for option in reversed(
            [
                click.option(
                    "--backends",
                    "-b",
                    metavar="LIST",
                    help="Comma-separated backend names (default: all registered).",
                ),
                click.option(
                    "--strategies",
                    "-s",
                    metavar="LIST",
                    help="Comma-separated strategy names (default: all).",
                ),
                click.option(
                    "--shape",
                    "shapes",
                    multiple=True,
                    metavar="TEXT",
                    help="A problem or grid, e.g. 'B=10,C=3,H=200,W=200,N=20,K=5' or 'C=1..128:x2,H=64,N=16,K=3,5'. Repeatable.",
                ),
                click.option(
                    "--suite",
                    metavar="NAME[,NAME]",
                    help=f"Named suite(s), comma-separated (default: {default_suite}); see `sharedconv suites`.",
                ),
                click.option(
                    "--mode",
                    type=click.Choice(["forward", "train", "both"]),
                    default="both",
                    show_default=True,
                ),
                click.option(
                    "--dtype",
                    type=click.Choice(DTYPES),
                    help="Dtype for problems that do not fix their own (default float32).",
                ),
                click.option(
                    "--device",
                    type=click.Choice([*DEVICES, "gpu"]),
                    default="cpu",
                    show_default=True,
                ),
                click.option(
                    "--threads",
                    type=int,
                    help="Threads for every framework (default: the cores this process may use).",
                ),
                MALLOC_OPTION,
                click.option(
                    "--seed",
                    type=int,
                    default=0,
                    show_default=True,
                    help="Seed of the random inputs.",
                ),
                click.option(
                    "--timeout",
                    type=float,
                    default=120.0,
                    show_default=True,
                    help="Seconds one case may take before its worker is killed.",
                ),
                click.option(
                    "--verbose",
                    "-v",
                    is_flag=True,
                    help="Show every case, and let frameworks print their logs.",
                ),
            ]
        ):
            f = option(f)
        return f

    return decorate


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
    from rich.console import Console
    from rich.table import Table

    rows: list[dict[str, Any]] = []
    for spec in list_specs():
        row: dict[str, Any] = {"name": spec.name, "origin": spec.origin, "target": spec.target}
        if spec.error:
            row.update(status="error", reason=spec.error, strategies=[], versions={})
            rows.append(row)
            continue
        try:
            backend = load_backend(spec.name)
            reason = backend.available()
            row.update(
                status="available" if reason is None else "unavailable",
                reason=reason,
                versions=backend.versions() if reason is None else {},
                devices=list(backend.devices),
                strategies=[s.describe() for s in backend.strategies],
            )
        except BackendLoadError as e:
            row.update(status="error", reason=str(e), strategies=[], versions={})
        rows.append(row)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = Table(title="Registered backends", title_justify="left")
    for col in ("backend", "status", "versions", "strategies", "from"):
        table.add_column(col, overflow="fold")
    for row in rows:
        status = {"available": "[green]available[/]", "unavailable": "[yellow]unavailable[/]"}.get(
            row["status"], "[red]error[/]"
        )
        table.add_row(
            row["name"],
            status,
            ", ".join(f"{k} {v}" for k, v in row.get("versions", {}).items()),
            ", ".join(s["name"] for s in row["strategies"]),
            row["origin"],
        )
    console = Console()
    console.print(table)
    # Reasons go below the table, whole, so a long install hint or error is not folded.
    for row in rows:
        if row.get("reason"):
            console.print(
                f"{row['name']}: {row['reason']}", soft_wrap=True, highlight=False, markup=False
            )


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
    from rich.table import Table

    table = Table(title="Strategies", title_justify="left")
    for col in (
        "backend/strategy",
        "layouts in -> out",
        "seed option",
        "description",
        "timed call",
    ):
        table.add_column(col, overflow="fold")
    for name in backends_from(backends):
        try:
            backend = load_backend(name)
        except BackendLoadError as e:
            table.add_row(name, "", "", f"[red]{e}[/]", "")
            continue
        for s in backend.strategies:
            table.add_row(
                f"{name}/{s.name}",
                f"{s.input_layout} -> {s.output_layout}",
                str(s.seed_option or ""),
                s.description,
                s.timed,
            )
    Console().print(table)


# ---- verify -------------------------------------------------------------------------------
@cli.command("verify")
@selection_options(default_suite="conformance")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the records as JSON instead of tables."
)
def verify_cmd(
    backends: str | None,
    strategies: str | None,
    shapes: tuple[str, ...],
    suite: str | None,
    mode: str,
    dtype: str | None,
    device: str,
    threads: int | None,
    malloc: str | None,
    seed: int,
    timeout: float,
    verbose: bool,
    as_json: bool,
) -> None:
    """Check strategies against the float64 oracle, forward and gradients.

    Exits 0 only when nothing failed (skipped and unavailable cases are not failures).
    """
    from .execute import Plan, execute
    from .report import failed, print_tables, verify_table

    names = backends_from(backends)
    plan = Plan(
        backends=names,
        problems=problems_from(shapes, suite, dtype, "conformance"),
        modes=modes_from(mode),
        strategies=strategies_from(strategies, names),
        device=device_from(device),
        threads=threads_from(threads),
        mallocs=mallocs_from(malloc),
        seed=seed,
        timeout=timeout,
        verbose=verbose,
    )
    records: list[dict[str, Any]] = []

    def collect(record: dict[str, Any]) -> None:
        records.append(record)
        if not as_json and record["status"] in ("mismatch", "crashed", "timeout", "error"):
            click.echo(f"  FAIL {record['case']}: {record.get('reason', '')}", err=True)

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
def _results_root(results: str | None) -> Path:
    return Path(results) if results else Path("results")


@cli.command("run")
@selection_options(default_suite="smoke")
@click.option(
    "--budget",
    type=float,
    help="Seconds of steady-state sampling per case (default: 2, or the suite's own, e.g. "
    "0.5 for smoke; see `sharedconv suites`).",
)
@click.option(
    "--precision",
    type=float,
    default=0.02,
    show_default=True,
    help="Stop a case when the median's 95% CI is within ± this fraction.",
)
@click.option("--min-samples", type=int, default=5, show_default=True)
@click.option(
    "--time-anyway",
    is_flag=True,
    help="Also time cases that disagree with the oracle (they stay marked as mismatches).",
)
@click.option("--results", "results", metavar="DIR", help="Folder of runs (default: ./results).")
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
    "--top",
    type=int,
    default=12,
    show_default=True,
    help="Rows per problem in the final tables (0: all).",
)
def run_cmd(
    backends: str | None,
    strategies: str | None,
    shapes: tuple[str, ...],
    suite: str | None,
    mode: str,
    dtype: str | None,
    device: str,
    threads: int | None,
    malloc: str | None,
    seed: int,
    timeout: float,
    verbose: bool,
    budget: float | None,
    precision: float,
    min_samples: int,
    time_anyway: bool,
    results: str | None,
    run_id: str | None,
    resume: str | None,
    rounds: int,
    top: int,
) -> None:
    """Verify and time a suite over every available backend and strategy; store the run.

    Each case is checked against the float64 oracle first; a disagreeing case is recorded as a
    mismatch and not timed. Results go to RESULTS/<run-id>/ (run.json, cases.jsonl) as each
    case finishes, so an interrupted run loses at most the case in flight (--resume).
    """
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from .execute import Plan
    from .report import FAILED, print_tables, ranking_tables
    from .runner import plan_from_meta, plan_size, run_plan, start_run
    from .store import RunWriter, StoreError

    if (budget is not None and budget <= 0) or precision <= 0 or min_samples < 2:
        raise click.UsageError("--budget and --precision must be > 0 and --min-samples >= 2")
    root = _results_root(results)
    if resume:
        if shapes or suite:
            raise click.UsageError(
                "--resume continues a run with its own problems; drop --shape/--suite"
            )
        try:
            writer, done = RunWriter.resume(root, resume)
        except StoreError as e:
            raise click.BadParameter(str(e), param_hint="--resume") from None
        plan = plan_from_meta(writer.meta)
    else:
        names = backends_from(backends)
        plan = Plan(
            backends=names,
            problems=problems_from(shapes, suite, dtype, "smoke"),
            modes=modes_from(mode),
            strategies=strategies_from(strategies, names),
            device=device_from(device),
            threads=threads_from(threads),
            mallocs=mallocs_from(malloc),
            rounds=rounds,
            seed=seed,
            timeout=timeout,
            verbose=verbose,
            timing={
                "budget": budget if budget is not None else suite_budget(shapes, suite, "smoke"),
                "precision": precision,
                "min_samples": min_samples,
                "time_anyway": time_anyway,
            },
        )
        try:
            writer = start_run(plan, root, suite if not shapes else None, run_id)
        except StoreError as e:
            raise click.BadParameter(str(e), param_hint="--run-id") from None
        done = set()
    console = Console(stderr=True)
    total = plan_size(plan) - len(done)
    console.print(
        f"run [bold]{writer.meta['run_id']}[/]: {total} cases"
        + (f" x {plan.rounds} rounds" if plan.rounds > 1 else "")
        + f", {plan.threads} threads, {allocators.choice_note(plan.mallocs, malloc)}, "
        f"writing {writer.folder}/cases.jsonl",
        highlight=False,
    )
    failures = 0
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("failed: {task.fields[failed]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as progress:
        task = progress.add_task("starting", total=total, failed=0)

        def on_record(record: dict[str, Any]) -> None:
            nonlocal failures
            if record["status"] in FAILED:
                failures += 1
                progress.console.print(
                    f"[red]{record['status']}[/] {record['case']}: {record.get('reason', '')[:200]}"
                )
            progress.update(task, advance=1, failed=failures, description=record["case"][:60])

        try:
            records = run_plan(plan, writer, done, on_record)
        except KeyboardInterrupt:
            console.print(
                f"interrupted; continue with: sharedconv run --resume {writer.meta['run_id']}"
            )
            sys.exit(130)
    from .store import read_run

    stored = read_run(writer.folder)
    print_tables(ranking_tables(stored.cases, writer.meta.get("roofline"), limit=top or None))
    n_timed = sum(1 for r in records if r.get("timed"))
    click.echo(
        f"{n_timed} cases timed, {failures} failed, {len(records) - n_timed - failures} skipped/unavailable/untimed; "
        f"results in {writer.folder}"
    )
    sys.exit(1 if failures else 0)


@cli.command("runs")
@click.option(
    "--results",
    "results",
    metavar="DIR",
    help="Folder of runs (default: ./results, then the reference runs).",
)
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
    for line in skipped:
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
@click.option("--results", "results", metavar="DIR", help="Folder of runs (default: ./results).")
@click.option(
    "--measure",
    is_flag=True,
    help="Measure this problem now (all available backends) instead of looking it up.",
)
@click.option(
    "--budget", type=float, default=1.0, show_default=True, help="With --measure: seconds per case."
)
@click.option(
    "--device",
    type=click.Choice([*DEVICES, "gpu"]),
    default="cpu",
    show_default=True,
    help="Answer for this device: stored timings from other devices are not used.",
)
@click.option(
    "--tf32",
    is_flag=True,
    help="On a GPU, also use timings made with TF32 allowed (float32 at about 10-bit precision; "
    "without this flag only full-float32 timings answer).",
)
@MALLOC_OPTION
def recommend_cmd(
    shape: str,
    mode: str,
    results: str | None,
    measure: bool,
    budget: float,
    device: str,
    tf32: bool,
    malloc: str | None,
) -> None:
    """Which strategy to use for a problem: from stored results (nearest measured problem,
    said as such) or measured on the spot with --measure."""
    from .report import print_tables, ranking_tables
    from .store import find_runs
    from .summary import nearest_problem

    try:
        target = parse_problems(shape)
    except ProblemError as e:
        raise click.BadParameter(str(e), param_hint="--shape") from None
    if len(target) != 1:
        raise click.BadParameter(
            f"give one problem, not a grid of {len(target)}", param_hint="--shape"
        )
    problem = target[0]
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
        print_tables(ranking_tables(records, writer.meta.get("roofline")))
        return
    device = device_from(device)
    runs, _ = find_runs([_results_root(results)])  # results/ holds the reference runs too

    def usable(r: dict) -> bool:
        return (
            r["mode"] == mode
            and bool(r.get("timing"))
            and r.get("device", "cpu") == device
            and (tf32 or (r.get("verify") or {}).get("precision") != "tf32")
        )

    candidates = [(run, r) for run in runs for r in run.cases if usable(r)]
    if not candidates:
        raise click.UsageError(
            f"no stored {mode} timings on {device} to answer from; run `sharedconv run"
            + (f" --device {device}" if device != "cpu" else "")
            + "` first or pass --measure"
        )
    text, distance = nearest_problem(problem, [r["problem"] for _, r in candidates])
    # the run with the most timed strategies for that problem answers (the newest of equals)
    counts: dict[str, int] = {}
    for run, r in candidates:
        if r["problem"] == text:
            counts[run.run_id] = counts.get(run.run_id, 0) + 1
    run_of = next(run for run in runs if counts.get(run.run_id) == max(counts.values()))
    if text != problem.to_text():
        click.echo(
            f"{problem.to_text()} was not measured; the nearest measured problem is {text} (from run {run_of.run_id})."
        )
        click.echo("Use --measure to time the exact problem on this machine.")
    else:
        click.echo(f"From run {run_of.label}, started {run_of.meta.get('started', '?')}.")
    records = [r for r in run_of.cases if r["problem"] == text and usable(r)]
    print_tables(ranking_tables(records, run_of.meta.get("roofline")))


@cli.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option("--results", "results", metavar="DIR", help="Folder of runs (default: ./results).")
@click.option(
    "--threshold",
    type=float,
    default=0.10,
    show_default=True,
    help="Flag cases whose median changed by more than this fraction.",
)
@click.option(
    "--alpha",
    type=float,
    default=0.05,
    show_default=True,
    help="Significance level of the Mann-Whitney U test.",
)
def compare_cmd(
    run_a: str, run_b: str, results: str | None, threshold: float, alpha: float
) -> None:
    """Compare two runs case by case: ratio of medians (B/A) and a Mann-Whitney U test on the
    raw samples. Exits 1 when a case got slower beyond --threshold with p < --alpha."""
    from rich.console import Console
    from rich.table import Table

    from .compare import compare_runs
    from .store import StoreError, read_run

    runs = []
    for ref in (run_a, run_b):
        path = Path(ref) if Path(ref).is_dir() else _results_root(results) / ref
        try:
            runs.append(read_run(path))
        except StoreError as e:
            raise click.BadParameter(str(e), param_hint="RUN_A/RUN_B") from None
    rows = compare_runs(runs[0], runs[1], threshold, alpha)
    if not rows:
        raise click.UsageError("the two runs have no timed case in common")
    table = Table(
        title=f"{runs[1].run_id} vs {runs[0].run_id} (ratio > 1: B is slower)", title_justify="left"
    )
    for col in ("case", "A median", "B median", "B/A", "p", "verdict"):
        table.add_column(col, overflow="fold")
    for row in rows:
        style = {"regression": "[bold red]", "improvement": "[green]"}.get(row["verdict"], "")
        table.add_row(
            row["case"],
            row["a"],
            row["b"],
            f"{row['ratio']:.3f}",
            f"{row['p']:.3g}",
            f"{style}{row['verdict']}[/]" if style else row["verdict"],
        )
    Console().print(table)
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
    type=float,
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
@click.option("--results", "results", metavar="DIR", help="Folder of runs (default: ./results).")
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
    from rich.table import Table

    from .execute import Plan
    from .runner import run_plan, start_run
    from .seed import OPTIONS, SEED_SHAPE, markdown, rows, seed_strategies, verdicts
    from .summary import format_bytes, format_seconds

    problems = problems_from(shapes or (SEED_SHAPE,), None, None, "seed")
    names = (
        backends_from(backends)
        if backends
        else [n for n in backends_from(None) if n.startswith("keras-")]
    )
    not_keras = [n for n in names if not n.startswith("keras-")]
    if not_keras:
        raise click.BadParameter(
            f"the seed question is about Keras; not Keras backends: {', '.join(not_keras)}",
            param_hint="--backends",
        )
    available = [n for n in names if load_backend(n).available() is None]
    if not available:
        raise click.UsageError(
            "no Keras backend is installed: pip install 'sharedconv[keras,tensorflow]' (or jax, torch)"
        )
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
        t = Table(title=f"The seed question on {problem.to_text()}", title_justify="left")
        for col in (
            "backend",
            "allocator",
            "option",
            "call path",
            "mode",
            "oracle",
            "bit-identical to opt 1",
            "median",
            "IQR",
            "peak memory",
        ):
            t.add_column(col)
        for r in table_rows:
            t.add_row(
                r["backend"],
                r["allocator"],
                f"{r['option']}: {OPTIONS.get(r['option'], '')}",
                r["call path"],
                r["mode"],
                f"{r['status']} ({r['error']:.1e})"
                if r["error"] is not None
                else f"{r['status']}: {r['reason'][:60]}",
                {True: "yes", False: "[yellow]no[/]", None: ""}[r["bit-identical to option 1"]],
                format_seconds(r["median_s"]),
                format_seconds(r["iqr_s"]),
                format_bytes(r["peak_bytes"]) if r["median_s"] else "",
            )
        out.print(t)
        sentences = verdicts(table_rows)
        for s in sentences:
            out.print(f"- {s[0].upper()}{s[1:]}", highlight=False)
        docs.append(markdown(table_rows, sentences, problem.to_text(), writer.meta))
    click.echo(f"stored as run {writer.meta['run_id']} in {writer.folder}")
    if write_doc:
        Path(write_doc).parent.mkdir(parents=True, exist_ok=True)
        described = "\n".join(
            f"- `{m}`: {allocators.get(m).summary}"
            + (
                f" (for your own script: `{how}`)"
                if (how := allocators.get(m).how_to_get())
                else ""
            )
            for m in plan.mallocs
        )
        header = SEED_DOC_HEADER.format(command=writer.meta["command"], allocators=described)
        Path(write_doc).write_text(header + "\n".join(docs))
        click.echo(f"wrote {write_doc}")


SEED_DOC_HEADER = """# The seed question, answered on this machine

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


@cli.command(
    "pytest-bench",
    context_settings={"ignore_unknown_options": True, "allow_extra_args": True, **CONTEXT},
)
@click.option(
    "--backends", "-b", metavar="LIST", help="Backends to benchmark (default: every available one)."
)
@click.argument("pytest_args", nargs=-1, type=click.UNPROCESSED)
def pytest_bench_cmd(backends: str | None, pytest_args: tuple[str, ...]) -> None:
    """Run the pytest-benchmark suites, one pytest process per backend, and merge the JSON.

    Other arguments go to pytest, e.g. --sharedconv-suite seed --benchmark-json out.json.
    """
    import subprocess
    import tempfile

    from .bench_import import merge

    args = list(pytest_args)
    if any(a.startswith("--sharedconv-backend") for a in args):
        raise click.UsageError(
            "pytest-bench chooses the backend per process; use --backends LIST instead of --sharedconv-backend"
        )
    json_out = None
    for i, a in enumerate(args):
        if a == "--benchmark-json" and i + 1 < len(args):
            json_out = args[i + 1]
            del args[i : i + 2]
            break
        if a.startswith("--benchmark-json="):
            json_out = a.split("=", 1)[1]
            del args[i]
            break
    suite_dir = Path(__file__).resolve().parent.parent / "tests" / "benchmarks"
    if not any(not a.startswith("-") and Path(a.split("::")[0]).exists() for a in args):
        if not suite_dir.is_dir():
            raise click.UsageError(
                "give the benchmark files to run (the repository's tests/benchmarks is not here)"
            )
        args.insert(0, str(suite_dir))
    names = [n for n in backends_from(backends) if load_backend(n).available() is None]
    if not names:
        raise click.UsageError(
            "no selected backend is available; `sharedconv backends` shows what to install"
        )
    parts = []
    failed = []
    with tempfile.TemporaryDirectory(prefix="sharedconv-bench-") as tmp:
        for name in names:
            part = Path(tmp) / f"{name}.json"
            cmd = [
                sys.executable,
                "-m",
                "pytest",
                *args,
                "--benchmark-enable",
                f"--sharedconv-backend={name}",
                f"--benchmark-json={part}",
                "-p",
                "no:cacheprovider",
            ]
            click.echo(f"== {name}: {' '.join(cmd[3:])}", err=True)
            code = subprocess.call(cmd)
            if code == 5:
                failed.append(f"{name} (no benchmark was collected: check the paths and -k)")
            elif code != 0:
                failed.append(f"{name} (pytest exit {code})")
            if part.exists():
                parts.append(part)
        if json_out and parts:
            Path(json_out).write_text(json.dumps(merge(parts), indent=2))
            click.echo(f"merged {len(parts)} file(s) into {json_out}", err=True)
    if failed:
        click.echo(f"failed: {', '.join(failed)}", err=True)
        sys.exit(1)


@cli.command("import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--results", "results", metavar="DIR", help="Folder of runs (default: ./results).")
@click.option("--run-id", metavar="ID", help="Name of the new run (default: date-host-import).")
def import_cmd(file: str, results: str | None, run_id: str | None) -> None:
    """Turn a pytest-benchmark JSON file with sharedconv's extra_info into a run the
    dashboard shows."""
    from .bench_import import ImportRefused, import_file
    from .store import StoreError, new_run_id

    try:
        writer, n, foreign = import_file(
            Path(file), _results_root(results), run_id or new_run_id("import")
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
@click.option(
    "--results",
    "results",
    metavar="DIR",
    help="Folder of runs (default: ./results, else the repository's reference runs).",
)
@click.option("--port", type=click.IntRange(1, 65535), default=8501, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--allow-remote-run",
    is_flag=True,
    help="Allow the Run page to start measurements when listening beyond 127.0.0.1.",
)
def dashboard_cmd(results: str | None, port: int, host: str, allow_remote_run: bool) -> None:
    """Open the Streamlit dashboard on the stored runs (Ctrl-C stops it)."""
    import importlib.util
    import os
    import subprocess

    if importlib.util.find_spec("streamlit") is None or importlib.util.find_spec("plotly") is None:
        raise click.UsageError(
            "the dashboard needs streamlit and plotly: pip install 'sharedconv[dashboard]'"
        )
    if results and not Path(results).is_dir():
        raise click.BadParameter(f"{results} is not a folder", param_hint="--results")
    app = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
    if not app.exists():  # installed as a package: sharedconv/dashboard/app.py
        from sharedconv import dashboard

        app = Path(dashboard.__file__).parent / "app.py"
    env = dict(os.environ)
    if results:
        env["SHAREDCONV_RESULTS"] = str(Path(results).resolve())
    env["SHAREDCONV_DASHBOARD_LOCAL"] = "1" if host in ("127.0.0.1", "localhost", "::1") else "0"
    if allow_remote_run:
        env["SHAREDCONV_ALLOW_REMOTE_RUN"] = "1"
    cmd = [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
    ]  # fmt: skip
    click.echo(f"sharedconv dashboard on http://{host}:{port} (Ctrl-C to stop)")
    try:
        sys.exit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        sys.exit(0)


def main() -> None:
    cli(prog_name="sharedconv")


if __name__ == "__main__":
    main()
