"""Which stored measurements answer "which strategy for this problem?".

One function for every front end: ``sharedconv recommend`` and the dashboard's Recommend page
both call :func:`answer`, so they pick the same run, the same nearest problem and the same
records. Nothing here measures or prints.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sharedconv.backends.problem import ConvProblem

from .machine import machine_key, this_machine
from .records import CaseRecord, Machine
from .store import Run
from .summary import nearest_problem


class NoAnswer(LookupError):
    """No stored timing can answer; the message says what to run."""


@dataclass
class Answer:
    run: Run
    problem: str  # the measured problem whose ranking answers (text form)
    exact: bool  # the asked problem itself was measured
    distance: float  # log-size distance from the asked problem (0 when exact)
    records: list[CaseRecord]  # that problem's usable records in that run
    machine: str = ""  # of a cluster run: the one machine whose timings answer ("" otherwise)


@dataclass(frozen=True)
class Question:
    problem: ConvProblem
    mode: str = "forward"
    device: str = "cpu"
    tf32: bool = False  # on a GPU, also use timings made with TF32 allowed
    malloc: str | None = None  # only timings under this allocator (None: any)
    # only timings of this machine: an id of a cluster run's machines table, a host name or a
    # CPU/GPU model (None: this machine's where a cluster run has it, else the most measured)
    machine: str | None = None

    def usable(self, record: CaseRecord) -> bool:
        return (
            record.mode == self.mode
            and record.status == "pass"
            and bool(record.median)
            and record.device == self.device
            and (self.tf32 or record.verify is None or record.verify.precision != "tf32")
            and (self.malloc is None or record.malloc_name == self.malloc)
        )


def answer(runs: Iterable[Run], question: Question) -> Answer:
    """The nearest measured problem, from the run that timed the most strategies for it (the
    first of equals, so pass runs newest first)."""
    runs = list(runs)
    candidates = [
        (run, r)
        for run in runs
        for r in run.cases
        if question.usable(r)
        and (question.machine is None or machine_matches(run, r, question.machine))
    ]
    if not candidates:
        where = f" under the {question.malloc} allocator" if question.malloc else ""
        where += f" on a machine called {question.machine}" if question.machine else ""
        raise NoAnswer(
            f"no stored {question.mode} timings on {question.device}{where} to answer from; run "
            "`sharedconv run"
            + (f" --device {question.device}" if question.device != "cpu" else "")
            + (f" --malloc {question.malloc}" if question.malloc else "")
            + "` first or pass --measure"
        )
    text, distance = nearest_problem(question.problem, [r.problem for _, r in candidates])
    counts: dict[str, int] = {}
    for run, r in candidates:
        if r.problem == text:
            counts[run.run_id] = counts.get(run.run_id, 0) + 1
    best = max(counts.values())
    run = next(run for run in runs if counts.get(run.run_id) == best)
    records = [
        r
        for r in run.cases
        if r.problem == text
        and question.usable(r)
        and (question.machine is None or machine_matches(run, r, question.machine))
    ]
    # a ranking never mixes the machines of a cluster run: this machine's, else the one that
    # timed the most strategies for the problem
    machines = sorted({r.machine_id for r in records})
    machine = machines[0] if machines else ""
    if len(machines) > 1:
        entries = run.meta.machines or {}
        here = [m for m in machines if m in entries and machine_key(entries[m]) == this_machine()]
        machine = (
            here[0]
            if here
            else max(machines, key=lambda m: sum(r.machine_id == m for r in records))
        )
        records = [r for r in records if r.machine_id == machine]
    exact = text == question.problem.to_text()
    return Answer(run, text, exact, 0.0 if exact else distance, records, machine)


def machine_description(run: Run, record: CaseRecord) -> Machine:
    """The machine that measured ``record``: its entry in a cluster run's machines table, else
    the run's machine."""
    return run.meta.machine_for(record.machine_id)


def machine_matches(run: Run, record: CaseRecord, name: str) -> bool:
    """``name`` is the record's machine id, host name, or (a part of) its CPU or GPU model."""
    if name == record.machine_id:
        return True
    machine = machine_description(run, record)
    models = [m for m in (machine.cpu_model, machine.gpu) if m]
    return name == machine.hostname or any(name.lower() in m.lower() for m in models)


def allocators_of(records: Iterable[CaseRecord]) -> list[str]:
    """The allocators among ``records``, the default first when present."""
    from .allocators import DEFAULT, FALLBACK

    names = sorted({r.malloc_name for r in records})
    return sorted(names, key=lambda n: (n not in (DEFAULT, FALLBACK), n))
