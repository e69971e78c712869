"""The ``sharedconv`` command line.

Bad input ends with a message that names the problem and the fix, and exit code 2; no
command imports a framework in this process (workers do).
"""

from __future__ import annotations

import json
import sys
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
    try:
        return list(load_suite(suite or default_suite, dtype).problems)
    except SuiteError as e:
        raise click.BadParameter(str(e), param_hint="--suite") from None


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
                    metavar="NAME",
                    help=f"A named suite (default: {default_suite}); see `sharedconv suites`.",
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
        click.echo(f"{name} ({len(suite.problems)} problems): {suite.description}")


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


def main() -> None:
    cli(prog_name="sharedconv")


if __name__ == "__main__":
    main()
