"""The benchmark scripts' one way of writing their output into a page: the text between two
copies of a marker (``<!-- name -->``) is replaced, the rest of the page kept."""

from __future__ import annotations

from pathlib import Path


def write_section(page: Path, mark: str, text: str, end: str | None = None) -> None:
    """Replace what stands between the ``mark`` line and the next ``end`` line of ``page``
    (``end``: a second ``mark`` unless given) with ``text``, which carries the marks itself."""
    end = end or mark
    doc = page.read_text()
    head, found, rest = doc.partition(mark)
    if not found or end not in rest:
        raise SystemExit(
            f"{page} has no section {mark}: put the lines {mark} and {end} where it goes"
        )
    page.write_text(head + text + rest.partition(end)[2])
