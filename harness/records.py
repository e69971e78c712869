"""What a stored case record means: its statuses and the numbers every reader derives from it.

Records stay JSON objects on disk (results/README.md has the schema); this module is the one
place that says what a status means and how a record's worst error, throughput and median are
read, so the CLI, the reports, the seed page, the pytest plugin and the dashboard cannot drift
apart.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from sharedconv.backends.agreement import OutputError


class Status(str, Enum):
    PASS = "pass"  # agreed with the oracle (and was timed, when timing was asked)
    MISMATCH = "mismatch"  # disagreed with the oracle: never timed unless --time-anyway
    SKIPPED = "skipped"  # decided without running: unsupported, too big, out of time
    UNAVAILABLE = "unavailable"  # the backend is not installed or not usable here
    CRASHED = "crashed"  # the worker died (signal, exit) during the case
    TIMEOUT = "timeout"  # the case outlived --timeout; its worker was killed
    ERROR = "error"  # a Python error inside the case
    UNVERIFIED = "unverified"  # ran without an oracle (no verification asked)


# statuses that count as failures of the strategy (exit code 1, red in tables)
FAILED = frozenset(s.value for s in (Status.MISMATCH, Status.CRASHED, Status.TIMEOUT, Status.ERROR))
# statuses that end a case: a resumed run does not run it again
FINAL = frozenset(s.value for s in Status)
NOT_RUN = frozenset(s.value for s in (Status.SKIPPED, Status.UNAVAILABLE))


def is_failed(record: dict[str, Any]) -> bool:
    return record.get("status") in FAILED


def output_errors(record: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per output (y, dx, dw, db): the verdict's stored errors (``rel_fro``, ``max_norm``,
    ``bound``...), empty when the case was not verified."""
    return (record.get("verify") or {}).get("errors") or {}


def worst_of(error: dict[str, Any]) -> float:
    """One output's worst error, as :attr:`OutputError.worst` defines it."""
    return OutputError(error["rel_fro"], error["max_norm"]).worst


def worst_error(record: dict[str, Any], output: str | None = None) -> float | None:
    """The largest error over the outputs (or of one ``output``), or None when unverified."""
    errors = output_errors(record)
    if output is not None:
        return worst_of(errors[output]) if errors.get(output) else None
    values = [worst_of(e) for e in errors.values()]
    return max(values) if values else None


def worst_ratio(record: dict[str, Any]) -> float | None:
    """The largest error over its bound, across the outputs (1.0 is the limit)."""
    values = [worst_of(e) / e["bound"] for e in output_errors(record).values() if e.get("bound")]
    return max(values) if values else None


def median_s(record: dict[str, Any]) -> float | None:
    return ((record.get("timing") or {}).get("stats") or {}).get("median")


def gflops(record: dict[str, Any], seconds: float | None = None) -> float | None:
    """Attained GFLOP/s at ``seconds`` per call (default: the record's median)."""
    s = seconds if seconds is not None else median_s(record)
    return record["flops"] / s / 1e9 if s and record.get("flops") else None


def gbps(record: dict[str, Any], seconds: float | None = None) -> float | None:
    """The problem's fewest bytes moved per second, in GB/s."""
    s = seconds if seconds is not None else median_s(record)
    return record["fewest_bytes"] / s / 1e9 if s and record.get("fewest_bytes") else None
