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


def write_between(page: Path, begin: str, end: str, text: str) -> None:
    """Replace ``begin`` ... ``end`` of ``page`` with ``text`` (which carries both marks), or
    append ``text`` where the page has no such section yet."""
    doc = page.read_text()
    if begin in doc:
        head, rest = doc.split(begin, 1)
        doc = head + text + rest.split(end, 1)[1]
    else:
        doc = doc.rstrip("\n") + "\n\n" + text + "\n"
    page.write_text(doc)
