"""``sharedconv report``: a stored run as a self-contained HTML file or as Markdown."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .cli_options import RESULTS_OPTION, THRESHOLD_OPTION, read_run_arg


def _write(path: str, text: str) -> None:
    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as e:
        raise click.UsageError(f"cannot write {path}: {e.strerror}") from None


@click.command("report")
@click.argument("run")
@RESULTS_OPTION
@click.option(
    "--html",
    "html_file",
    metavar="FILE",
    help="Write one self-contained HTML file (opens offline; needs sharedconv[dashboard]).",
)
@click.option(
    "--markdown",
    "markdown_file",
    metavar="FILE",
    help="Write GitHub-flavoured Markdown, short enough for a pull request or an issue.",
)
@click.option(
    "--compare",
    "compare_ref",
    metavar="RUN_B",
    help="Add the comparison with a second run (B/A ratios, Mann-Whitney verdicts).",
)
@THRESHOLD_OPTION
@click.option(
    "--top",
    type=click.IntRange(1, 1000),
    default=5,
    show_default=True,
    help="Markdown: strategies per problem (the seed's three options are added when not among them).",
)
def report_cmd(
    run: str,
    results: str | None,
    html_file: str | None,
    markdown_file: str | None,
    compare_ref: str | None,
    threshold: float,
    top: int,
) -> None:
    """Share a run: RUN (a run folder or an id) as a self-contained HTML report (--html) and/or
    Markdown (--markdown); with neither, the Markdown is printed."""
    from .share import GITHUB_COMMENT_LIMIT, build, to_markdown

    first = read_run_arg(run, results, "RUN")
    second = read_run_arg(compare_ref, results, "--compare") if compare_ref else None
    report = build(first, second, threshold)
    if html_file:
        try:
            from sharedconv.dashboard.html_report import to_html
        except ImportError as e:
            raise click.UsageError(
                f"the HTML report needs plotly and pandas ({e.name} is missing): "
                "pip install 'sharedconv[dashboard]'"
            ) from None
        _write(html_file, to_html(report))
        click.echo(f"wrote {html_file}", err=True)
    if markdown_file or not html_file:
        text = to_markdown(report, top)
        if len(text) > GITHUB_COMMENT_LIMIT:
            click.echo(
                f"note: the Markdown is {len(text)} characters; GitHub takes {GITHUB_COMMENT_LIMIT} "
                "in a comment: use a smaller --top, or share the HTML report",
                err=True,
            )
        if markdown_file:
            _write(markdown_file, text)
            click.echo(f"wrote {markdown_file}", err=True)
        else:
            sys.stdout.write(text)
