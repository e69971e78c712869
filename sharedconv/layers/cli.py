"""``sharedconv layers``: the decisions the drop-in layers cached on this machine."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from ._core import Cache, cache_dir


@click.group("layers")
def layers_group() -> None:
    """The drop-in layers (sharedconv.layers): their cached strategy decisions."""


@layers_group.command("cache")
@click.option("--clear", is_flag=True, help="Forget every cached decision (layers tune again).")
@click.option("--json", "as_json", is_flag=True, help="Print the decisions as JSON.")
def cache_cmd(clear: bool, as_json: bool) -> None:
    """Show (or clear) the decisions cached in the user cache folder."""
    cache = Cache()
    if clear:
        if not cache.path.exists():
            click.echo(f"no cached decisions ({cache.path} does not exist)")
            return
        n = cache.clear()
        click.echo(f"cleared {n} cached decision(s) from {cache.path}")
        return
    entries = cache.entries()
    for problem in cache.problems:
        click.echo(f"warning: {problem}", err=True)
    if as_json:
        click.echo(json.dumps([c.to_dict() for c in entries], indent=1))
        return
    if not entries:
        click.echo(
            f"no cached decisions in {cache_dir()}; a layer with strategy='auto' tunes at its first call"
        )
        return
    table = Table(title=f"{len(entries)} decision(s) in {cache.path}", title_justify="left")
    for column in (
        "framework",
        "device",
        "problem",
        "mode",
        "layout",
        "strategy",
        "median",
        "source",
        "threads",
        "when",
    ):
        table.add_column(column, justify="right" if column in ("median", "threads") else "left")
    for c in sorted(entries, key=lambda c: (c.key.framework, c.key.problem, c.key.mode)):
        times = {t.strategy: t.median_s for t in c.trials}
        median = times.get(c.strategy)
        table.add_row(
            *(
                Text(str(v))
                for v in (
                    f"{c.key.framework} {c.key.framework_version}",
                    c.key.device,
                    c.key.problem,
                    c.key.mode,
                    c.key.layout,
                    c.strategy,
                    f"{median * 1e3:.3f} ms" if median is not None else "-",
                    c.source,
                    c.key.threads,
                    c.created,
                )
            )
        )
    Console().print(table)
