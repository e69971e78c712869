"""Which stored measurements answer "which strategy for this problem?".

One function for every front end: ``sharedconv recommend`` and the dashboard's Recommend page
both call :func:`answer`, so they pick the same run, the same nearest problem and the same
records. Nothing here measures or prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sharedconv.backends.problem import ConvProblem

from .store import Run
from .summary import malloc_of, nearest_problem


class NoAnswer(LookupError):
    """No stored timing can answer; the message says what to run."""


@dataclass
class Answer:
    run: Run
    problem: str  # the measured problem whose ranking answers (text form)
    exact: bool  # the asked problem itself was measured
    distance: float  # log-size distance from the asked problem (0 when exact)
    records: list[dict[str, Any]]  # that problem's usable records in that run


@dataclass(frozen=True)
class Question:
    problem: ConvProblem
    mode: str = "forward"
    device: str = "cpu"
    tf32: bool = False  # on a GPU, also use timings made with TF32 allowed
    malloc: str | None = None  # only timings under this allocator (None: any)

    def usable(self, record: dict[str, Any]) -> bool:
        return (
            record.get("mode") == self.mode
            and record.get("status") == "pass"
            and bool(record.get("timing"))
            and record.get("device", "cpu") == self.device
            and (self.tf32 or (record.get("verify") or {}).get("precision") != "tf32")
            and (self.malloc is None or malloc_of(record) == self.malloc)
        )


def answer(runs: Iterable[Run], question: Question) -> Answer:
    """The nearest measured problem, from the run that timed the most strategies for it (the
    first of equals, so pass runs newest first)."""
    runs = list(runs)
    candidates = [(run, r) for run in runs for r in run.cases if question.usable(r)]
    if not candidates:
        where = f" under the {question.malloc} allocator" if question.malloc else ""
        raise NoAnswer(
            f"no stored {question.mode} timings on {question.device}{where} to answer from; run "
            "`sharedconv run"
            + (f" --device {question.device}" if question.device != "cpu" else "")
            + (f" --malloc {question.malloc}" if question.malloc else "")
            + "` first or pass --measure"
        )
    text, distance = nearest_problem(question.problem, [r["problem"] for _, r in candidates])
    counts: dict[str, int] = {}
    for run, r in candidates:
        if r["problem"] == text:
            counts[run.run_id] = counts.get(run.run_id, 0) + 1
    best = max(counts.values())
    run = next(run for run in runs if counts.get(run.run_id) == best)
    records = [r for r in run.cases if r["problem"] == text and question.usable(r)]
    exact = text == question.problem.to_text()
    return Answer(run, text, exact, 0.0 if exact else distance, records)


def allocators_of(records: Iterable[dict[str, Any]]) -> list[str]:
    """The allocators among ``records``, the default first when present."""
    from .allocators import DEFAULT, FALLBACK

    names = sorted({malloc_of(r) for r in records})
    return sorted(names, key=lambda n: (n not in (DEFAULT, FALLBACK), n))
