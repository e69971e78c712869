"""Tool commands: ``pytest-bench``, ``import`` (pytest-benchmark JSON as a run) and
``dashboard``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from sharedconv.backends.registry import load_backend

from .cli_options import CONTEXT, RESULTS_OPTION, backends_from, results_root


@click.command(
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


@click.command("import")
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
            results_root(results),
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


@click.command("dashboard")
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
