"""The benchmark scripts' one way of writing their output into a page: the text between two
copies of a marker (``<!-- name -->``) is replaced, the rest of the page kept."""

from __future__ import annotations

from pathlib import Path


def write_section(page: Path, mark: str, text: str) -> None:
    """Replace what stands between the two ``mark`` lines of ``page`` with ``text`` (which
    carries the marks itself)."""
    doc = page.read_text()
    if doc.count(mark) < 2:
        raise SystemExit(f"{page} has no section {mark}: put two lines {mark} where it goes")
    head, _, rest = doc.partition(mark)
    _, _, tail = rest.partition(mark)
    page.write_text(head + text + tail)
