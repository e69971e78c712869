"""The stored records' types: one case (:class:`CaseRecord`) and its parts, with their statuses.

Records are JSON objects on disk (``cases.jsonl``, ``rounds.jsonl``; results/README.md has the
schema). This module is the one place that says what a stored field is and what a status means:
the store reads every line into a :class:`CaseRecord` (a field of the wrong type skips the line
with its path, e.g. ``timing.stats.median (not a number)``) and writes every record through one,
and the CLI, the reports, the seed page, the pytest plugin and the dashboard read the typed
fields and the derived numbers here (worst error, throughput, median), so they cannot drift
apart.

A record round-trips: ``CaseRecord.from_dict(d).to_dict() == d`` for every record any version
wrote. A field this version does not know (a newer writer's) is kept in ``extra`` and written
back; a field absent from the file stays absent when written back.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from sharedconv.backends.agreement import OutputError

CASE_SCHEMA = 1  # the version of a case line; a reader skips lines of a newer one
REQUIRED_CASE_KEYS = ("case", "backend", "strategy", "problem", "mode", "status")


class Status(str, enum.Enum):
    PASS = "pass"  # agreed with the oracle (and was timed, when timing was asked)
    MISMATCH = "mismatch"  # disagreed with the oracle: never timed unless --time-anyway
    SKIPPED = "skipped"  # decided without running: unsupported, too big, out of time
    UNAVAILABLE = "unavailable"  # the backend is not installed or not usable here
    CRASHED = "crashed"  # the worker died (signal, exit) during the case
    TIMEOUT = "timeout"  # the case outlived --timeout; its worker was killed
    ERROR = "error"  # a Python error inside the case
    UNVERIFIED = "unverified"  # ran without an oracle (no verification asked)

    def __str__(self) -> str:  # "pass", not "Status.PASS", in tables and messages
        return self.value

    def __hash__(self) -> int:  # equal to its text, so it hashes as its text (sets, dict keys)
        return hash(self.value)


# statuses that count as failures of the strategy (exit code 1, red in tables)
FAILED = frozenset(s.value for s in (Status.MISMATCH, Status.CRASHED, Status.TIMEOUT, Status.ERROR))
# statuses that end a case: a resumed run does not run it again
FINAL = frozenset(s.value for s in Status)
NOT_RUN = frozenset(s.value for s in (Status.SKIPPED, Status.UNAVAILABLE))


class RecordError(ValueError):
    """A stored field of the wrong type; the message is its path and why, e.g.
    ``timing.stats.median (not a number)``."""


# ---- the mechanism: dataclasses read from and written to JSON objects ---------------------
R = TypeVar("R", bound="Record")


@dataclass(frozen=True)
class Record:
    """A typed view of one JSON object. Subclasses declare the fields readers use, with their
    types; ``from_dict`` checks and converts them (nested records, lists, mappings), keeps
    unknown keys in ``extra``, and remembers which keys the object had, so ``to_dict`` writes
    back exactly what was read (plus any field set since)."""

    extra: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _keys: frozenset[str] | None = field(default=None, repr=False, compare=False)

    _NOT_FIELDS: ClassVar[frozenset[str]] = frozenset({"extra", "_keys"})

    @classmethod
    def from_dict(cls: type[R], data: Any) -> R:
        """The record of a JSON object; :class:`RecordError` names the first wrong field by
        its path (``timing.stats.median (not a number)``)."""
        try:
            return _converter(cls)(data)
        except _Wrong as e:
            where = ".".join(reversed(e.keys)).replace(".[", "[")
            raise RecordError(f"{where or cls.__name__} ({e.why})") from None

    @classmethod
    def _build(cls: type[R], data: Any) -> R:
        if not isinstance(data, dict):
            raise _Wrong("not an object")
        values: dict[str, Any] = {}
        for name, convert in _plan(cls):
            if name in data:
                try:
                    values[name] = convert(data[name])
                except _Wrong as e:
                    raise e.at(name) from None
        known = _known(cls)
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra, _keys=frozenset(data))

    def has(self, name: str) -> bool:
        """Whether the field ``name`` was in the object read, or has been set since."""
        return self._has(next(f for f in _fields(type(self)) if f.name == name))

    def _has(self, f: dataclasses.Field) -> bool:
        read = self._keys is not None and f.name in self._keys
        return read or _differs_from_default(f, getattr(self, f.name))

    def to_dict(self) -> dict[str, Any]:
        out = {f.name: _dump(getattr(self, f.name)) for f in _fields(type(self)) if self._has(f)}
        out.update(self.extra)
        return out


class _Wrong(Exception):
    """A wrong value deep in an object: ``keys`` collects its path on the way out (the path is
    only built for the rare wrong value, never for the many right ones)."""

    def __init__(self, why: str):
        self.why = why
        self.keys: list[str] = []

    def at(self, key: str) -> _Wrong:
        self.keys.append(key)
        return self


@functools.cache
def _fields(cls: type) -> tuple[dataclasses.Field, ...]:
    return tuple(f for f in dataclasses.fields(cls) if f.name not in Record._NOT_FIELDS)


@functools.cache
def _known(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in _fields(cls))


@functools.cache
def _plan(cls: type) -> tuple[tuple[str, Callable[[Any], Any]], ...]:
    """Per field: its name and the converter of its declared type (every field has a default;
    the keys a record cannot do without are checked by its ``from_dict``)."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, _converter(hints[f.name])) for f in _fields(cls))


def _differs_from_default(f: dataclasses.Field, value: Any) -> bool:
    if f.default is not dataclasses.MISSING:
        return value != f.default
    if f.default_factory is not dataclasses.MISSING:
        return value != f.default_factory()
    return True  # a required field is always written


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _as_float(value: Any) -> Any:
    if not _number(value):
        raise _Wrong("not a number")
    return value  # an int stays an int: written back as it was read


def _as_int(value: Any) -> int:
    if not _number(value) or not float(value).is_integer():
        raise _Wrong("not an integer")
    return int(value)


def _as_bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Wrong("not true or false")
    return value


def _as_str(value: Any) -> str:
    if not isinstance(value, str):
        raise _Wrong("not text")
    return value


def _as_any(value: Any) -> Any:
    return value


_SIMPLE: dict[Any, Callable[[Any], Any]] = {
    float: _as_float,
    int: _as_int,
    bool: _as_bool,
    str: _as_str,
    Any: _as_any,
}


@functools.cache
def _converter(hint: Any) -> Callable[[Any], Any]:  # noqa: PLR0911 - one branch per kind
    """A function that checks a JSON value against a declared type and converts it (nested
    records, lists, mappings, enums), raising :class:`_Wrong`; made once per type."""
    if hint in _SIMPLE:
        return _SIMPLE[hint]
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        optional = type(None) in options
        real = [_converter(o) for o in options if o is not type(None)]
        names = " or ".join(_name(o) for o in options if o is not type(None))

        def union(value: Any) -> Any:
            if value is None and optional:
                return None
            if len(real) == 1:
                return real[0](value)
            for convert in real:  # e.g. int | str: the first that takes it
                try:
                    return convert(value)
                except _Wrong:
                    continue
            raise _Wrong(f"not {names}")

        return union
    if isinstance(hint, type) and issubclass(hint, Record):
        return hint._build
    if origin is list:
        item = _converter(typing.get_args(hint)[0])

        def listed(value: Any) -> list[Any]:
            if not isinstance(value, list):
                raise _Wrong("not a list")
            if item is _as_float and all(map(_number, value)):
                return value  # the raw samples: long lists of numbers, checked in one pass
            out = []
            for i, v in enumerate(value):
                try:
                    out.append(item(v))
                except _Wrong as e:
                    raise e.at(f"[{i}]") from None
            return out

        return listed
    if origin is dict:
        item = _converter(typing.get_args(hint)[1])

        def mapping(value: Any) -> dict[str, Any]:
            if not isinstance(value, dict):
                raise _Wrong("not an object")
            out = {}
            for k, v in value.items():
                try:
                    out[str(k)] = item(v)
                except _Wrong as e:
                    raise e.at(str(k)) from None
            return out

        return mapping
    if isinstance(hint, type) and issubclass(hint, enum.Enum):

        def member(value: Any) -> Any:
            if not isinstance(value, str):
                raise _Wrong("not text")
            try:
                return hint(value)
            except ValueError:
                raise _Wrong(f"unknown value {value[:40]!r}") from None

        return member
    raise TypeError(f"records: no conversion for {hint!r}")  # a bug here, not data


def _name(hint: Any) -> str:
    """A declared type in words, for a message about data."""
    hint = typing.get_origin(hint) or hint
    names = {float: "a number", int: "an integer", str: "text", bool: "true or false",
             list: "a list", dict: "an object"}  # fmt: skip
    return names.get(
        hint, "an object" if isinstance(hint, type) and issubclass(hint, Record) else str(hint)
    )


def _dump(value: Any) -> Any:
    if isinstance(value, Record):
        return value.to_dict()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


# ---- the record types ---------------------------------------------------------------------
@dataclass(frozen=True)
class Stats(Record):
    """Summary of the per-call samples (seconds): ``harness.stats.Summary`` as stored."""

    n: int = 0
    median: float | None = None
    q1: float | None = None
    q3: float | None = None
    iqr: float | None = None
    min: float | None = None
    max: float | None = None
    mean: float | None = None
    std: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    noisy: bool = False
    median_of: str | None = None  # "round medians" for a case measured in rounds


@dataclass(frozen=True)
class Faults(Record):
    """Page faults over the timed blocks (``timing.fault_counts``)."""

    calls: int = 0
    minor_per_call: float = 0.0
    major_per_call: float = 0.0
    kernel_share: float | None = None  # system CPU time over user + system
    flagged: bool = False

    def text(self) -> str:
        """Page faults per call, e.g. ``48,052`` or ``48,052 (77% kernel)`` when flagged."""
        text = f"{self.minor_per_call:,.0f}"
        if self.flagged and self.kernel_share is not None:
            text += f" ({self.kernel_share:.0%} kernel)"
        return text

    def warning(self) -> str | None:
        """The flag's sentence for a call that faults more than a small threshold per call."""
        if not self.flagged:
            return None
        share = self.kernel_share
        part = f"{share:.0%} of its CPU time is in the kernel, " if share is not None else ""
        return (
            f"{part}{self.minor_per_call:,.0f} page faults per call: the allocator, not the "
            "strategy, decides much of this time (see --malloc and docs/allocator.md)"
        )


@dataclass(frozen=True)
class Timing(Record):
    """The steady-state timing of a case (``timing.steady_state``), merged over rounds for a
    case measured in rounds, or replaced by its interleaved turns (``interleave``)."""

    block_size: int = 1
    block_times: list[float] = field(default_factory=list)
    stats: Stats | None = None
    warmup_s: float | None = None
    warmup_calls: int | None = None
    overhead_s: float | None = None
    overhead_fraction: float | None = None
    stopped_by: str | None = None
    steady_s: float | None = None
    faults: Faults | None = None
    rounds: list[Timing] | None = None  # each round's own timing (--rounds N)
    interleaved: dict[str, Any] | None = None  # group, cycles, candidates (--interleave)
    interleaved_error: str | None = None
    calibration: dict[str, Any] | None = None  # the sequential blocks before interleaving
    round_medians: list[float] | None = None  # --rounds N: each round's median
    round_spread: float | None = None  # max/min - 1 of the round medians
    unsteady: bool = False  # the round medians differ by over 10%

    @property
    def median(self) -> float | None:
        return self.stats.median if self.stats is not None else None

    def samples(self) -> list[float]:
        """Per-call seconds: the raw block times over the block size (of every round, for a
        case measured in rounds)."""
        if self.rounds is not None:
            return [s for t in self.rounds for s in t.samples()]
        block = self.block_size or 1
        return [t / block for t in self.block_times]


@dataclass(frozen=True)
class OutputCheck(Record):
    """One output's agreement with the oracle (``agreement.OutputError`` plus its bound)."""

    rel_fro: float = 0.0
    max_norm: float = 0.0
    bound: float | None = None
    shape_ok: bool = True
    finite: bool = True

    @property
    def worst(self) -> float:
        return OutputError(self.rel_fro, self.max_norm).worst

    @property
    def ratio(self) -> float | None:
        """The worst error over the bound (1.0 is the limit)."""
        return self.worst / self.bound if self.bound else None


@dataclass(frozen=True)
class Verification(Record):
    """The oracle's verdict on a case's outputs (``agreement.compare_outputs``)."""

    errors: dict[str, OutputCheck | None] = field(default_factory=dict)  # y, dx, dw, db
    bound: float | None = None
    failures: list[str] = field(default_factory=list)
    precision: str | None = None  # "tf32": float32 held to TF32's bound

    def checks(self) -> dict[str, OutputCheck]:
        return {k: v for k, v in self.errors.items() if v is not None}

    def worst(self, output: str | None = None) -> float | None:
        """The largest error over the outputs (or of one ``output``)."""
        checks = self.checks()
        if output is not None:
            return checks[output].worst if output in checks else None
        return max((c.worst for c in checks.values()), default=None)


@dataclass(frozen=True)
class MemoryMethod(Record):
    """One way the peak was measured (``source``: rss, framework, framework+rss, allocator,
    first_call; ``rejected`` when it fell below the call's outputs)."""

    source: str | None = None
    peak_bytes: int | None = None
    method: str | None = None


@dataclass(frozen=True)
class Memory(Record):
    """The peak memory of one call and how it was measured (``timing.measure_peak``)."""

    peak_bytes: int | None = None
    method: str | None = None
    methods: list[MemoryMethod] | None = None
    unknown_reason: str | None = None


@dataclass(frozen=True)
class Paired(Record):
    """A case timed interleaved: its time over the group's fastest (``baseline``), the median
    of the per-cycle ratios with a 95% bootstrap interval."""

    baseline: str | None = None
    ratio: float | None = None
    low: float | None = None
    high: float | None = None

    def text(self) -> str:
        if self.ratio is None or self.low is None or self.high is None:
            return ""
        return f"{self.ratio:.3f} ({self.low:.3f}-{self.high:.3f})"


@dataclass(frozen=True)
class CaseRecord(Record):
    """One case of a run: what was run, its outcome, and what was measured."""

    case: str = ""
    backend: str = ""
    strategy: str = ""
    problem: str = ""
    mode: str = "forward"
    status: Status = Status.SKIPPED
    case_schema: int = CASE_SCHEMA
    schema: int = 1
    params: dict[str, Any] | None = None
    device: str = "cpu"
    malloc: str | None = None  # absent in runs from before the allocator was a case dimension
    dtype: str | None = None
    threads: int | None = None
    flops: float | None = None
    fewest_bytes: float | None = None
    seed_option: int | None = None
    input_layout: str | None = None
    output_layout: str | None = None
    tags: list[str] = field(default_factory=list)
    timed_region: str | None = None
    base: str | None = None  # a variant's base strategy and its form (compiled, xla, predict)
    form: str | None = None
    formerly: str | None = None  # read under a renamed strategy's current name
    reason: str | None = None
    setup_s: float | None = None
    first_call_s: float | None = None
    wall_s: float | None = None
    verify: Verification | None = None
    timed: bool = False
    timing: Timing | None = None
    memory: Memory | None = None
    paired: Paired | None = None
    precision: str | None = None
    machine: Any = None  # cluster runs: an id into run.json's machines
    machine_kind: str | None = None
    retried_after: str | None = None
    # its worker ran no case before it (its backend's first case, --isolate, or after a fault),
    # so its first-call memory reading met empty framework pools
    fresh_worker: bool | None = None
    round: int | None = None  # rounds.jsonl: the round of this line
    rounds: int | None = None  # cases.jsonl of a run in rounds: how many counted
    failed_round: int | None = None
    signal: Any = None  # crashed/timeout: the signal that ended the worker
    stderr_tail: str | None = None
    output_digest: str | None = None  # seed runs: SHA-256 prefix of the canonical output
    verified_on: Any = None  # huge problems: the seeded sample of images the oracle checked
    non_finite: list[str] | None = None  # where a number was NaN/inf when written (as null)

    def __post_init__(self) -> None:
        if not isinstance(self.status, Status):  # CaseRecord(status="pass") in code
            object.__setattr__(self, "status", Status(self.status))

    @classmethod
    def from_dict(cls, data: Any) -> CaseRecord:
        if not isinstance(data, dict) or any(k not in data for k in REQUIRED_CASE_KEYS):
            raise RecordError("(not a sharedconv case record)")
        return super().from_dict(data)

    # ---- what readers derive ----
    @property
    def label(self) -> str:
        return f"{self.backend}/{self.strategy}"

    @property
    def failed(self) -> bool:
        return self.status.value in FAILED

    @property
    def median(self) -> float | None:
        """Seconds per call (the timing's median), or None when not timed."""
        return self.timing.median if self.timing is not None else None

    @property
    def machine_id(self) -> str:
        """The machine of a cluster run that measured the record ("" for a run made on one)."""
        return self.machine if isinstance(self.machine, str) else ""

    @property
    def malloc_name(self) -> str:
        """The allocator the record was measured under (``fixed`` before it was recorded)."""
        return self.malloc or "fixed"

    def checks(self) -> dict[str, OutputCheck]:
        """Per output (y, dx, dw, db): the verdict's errors; empty when not verified."""
        return self.verify.checks() if self.verify is not None else {}

    def worst_error(self, output: str | None = None) -> float | None:
        """The largest error over the outputs (or of one ``output``), or None when unverified."""
        return self.verify.worst(output) if self.verify is not None else None

    def worst_ratio(self) -> float | None:
        """The largest error over its bound, across the outputs (1.0 is the limit)."""
        ratios = [r for c in self.checks().values() if (r := c.ratio) is not None]
        return max(ratios, default=None)

    def gflops(self, seconds: float | None = None) -> float | None:
        """Attained GFLOP/s at ``seconds`` per call (default: the record's median)."""
        return giga_per_second(self.flops, seconds if seconds is not None else self.median)

    def gbps(self, seconds: float | None = None) -> float | None:
        """The problem's fewest bytes moved per second, in GB/s."""
        return giga_per_second(self.fewest_bytes, seconds if seconds is not None else self.median)

    def replace(self, **changes: Any) -> CaseRecord:
        """A copy with ``changes`` (the record is immutable)."""
        return dataclasses.replace(self, **changes)


# ---- run.json ----------------------------------------------------------------------------
RUN_SCHEMA = 1  # the version of run.json; a reader skips a run of a newer one


@dataclass(frozen=True)
class Roofline(Record):
    """A machine's peak float32 FLOP/s and copy bandwidth (``harness.roofline``), or why not."""

    peak_flops: float | None = None
    copy_bytes_per_s: float | None = None
    method: str | None = None
    threads: int | None = None
    blas: Any = None
    error: str | None = None  # e.g. a cluster run: each machine has its own
    peak_flops_tf32: float | None = None  # GPUs (the GPU check)
    peak_flops_bf16: float | None = None
    gpu: str | None = None

    @property
    def usable(self) -> bool:
        return bool(self.peak_flops) and bool(self.copy_bytes_per_s)


@dataclass(frozen=True)
class Machine(Record):
    """The machine that measured (``harness.machine.machine_info``); in a cluster run's
    ``machines`` also its Ray node, its own roofline and its workers' versions."""

    hostname: str | None = None
    cpu_model: str | None = None
    vector_isa: str | None = None
    logical_cores: int | None = None
    usable_cores: int | None = None
    memory_bytes: int | None = None
    os: str | None = None
    python: str | None = None
    numpy: str | None = None
    gpu: str | None = None
    env_flags: dict[str, Any] | None = None
    ray_node_id: str | None = None
    roofline: Roofline | None = None
    workers: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        """The GPU for a GPU run, else the CPU model."""
        return self.gpu or self.cpu_model or "unknown machine"


@dataclass(frozen=True)
class RunMeta(Record):
    """``run.json``: the plan, the machine, the versions, the roofline and the allocators of a
    run (results/README.md, field by field)."""

    run_id: str = ""
    schema: int = RUN_SCHEMA
    status: str | None = None  # running, complete, interrupted
    status_note: str | None = None
    started: str | None = None
    ended: str | None = None
    resumed: list[str] | None = None
    command: str | None = None
    suite: str | None = None
    problems: list[str] | None = None
    backends: list[str] | None = None
    strategies: list[str] | None = None
    modes: list[str] | None = None
    device: str = "cpu"
    threads: int | None = None
    seed: int | None = None
    timing: dict[str, Any] | None = None
    timeout_s: float | None = None
    malloc: list[str] | str | None = None  # one name in runs from before --malloc took several
    allocators: dict[str, Any] | None = None
    rounds: int | None = None
    interleave: bool | None = None
    isolate: bool | None = None  # every case in a worker of its own (--isolate)
    tf32: bool | None = None
    precision: str | None = None  # the GPU check's TF32 on / off phases
    gpu_check: str | None = None
    machine: Machine | None = None
    project: dict[str, Any] | None = None
    roofline: Roofline | None = None
    workers: dict[str, Any] | None = None
    executor: dict[str, Any] | None = None  # cluster runs
    machines: dict[str, Machine] | None = None
    non_finite: list[str] | None = None

    @classmethod
    def from_dict(cls, data: Any) -> RunMeta:
        if not isinstance(data, dict) or not isinstance(data.get("run_id"), str):
            raise RecordError("(not a sharedconv run description)")
        return super().from_dict(data)

    @property
    def mallocs(self) -> list[str]:
        """The run's allocators: a list since they became a case dimension, one name before,
        absent in runs from before ``--malloc`` (their probe fixed glibc's thresholds)."""
        value = self.malloc or "fixed"
        return list(value) if isinstance(value, list) else [value]

    def machine_for(self, machine_id: str = "") -> Machine:
        """A cluster run's machine ``machine_id``, else the run's machine."""
        entry = (self.machines or {}).get(machine_id) if machine_id else None
        return entry or self.machine or Machine()

    def roofline_for(self, machine_id: str = "") -> Roofline | None:
        """The roofline a record's fraction refers to: its machine's in a cluster run, else the
        run's."""
        entry = (self.machines or {}).get(machine_id) if machine_id else None
        if entry is not None and entry.roofline is not None:
            return entry.roofline
        return self.roofline


def giga_per_second(amount: float | None, seconds: float | None) -> float | None:
    """GFLOP/s or GB/s: ``amount`` (FLOPs, bytes) per call at ``seconds`` per call."""
    return amount / seconds / 1e9 if amount and seconds else None


def as_record(record: CaseRecord | dict[str, Any]) -> CaseRecord:
    """A record as the typed one (records made in this process are dicts until written)."""
    return record if isinstance(record, CaseRecord) else CaseRecord.from_dict(record)
