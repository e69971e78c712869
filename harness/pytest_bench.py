"""``sharedconv pytest-bench``: the pytest-benchmark suite, one pytest process per backend.

Frameworks must not share a process (their thread pools and allocators fight), so each
backend gets its own ``pytest`` run and the JSON files are merged into one that
``pytest-benchmark compare`` and ``sharedconv import`` read. The benchmark file ships inside
the package (``BENCHMARKS``), so this works from an installed wheel as well as a checkout.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from .bench_import import merge

BENCHMARKS = Path(__file__).resolve().parent / "benchmarks"


class BenchUsageError(ValueError):
    """The arguments cannot work; the message says why and what to give instead."""


def take_json_option(args: list[str]) -> tuple[list[str], str | None]:
    """``args`` without ``--benchmark-json PATH`` (or ``=PATH``), and that path: each backend's
    pytest writes its own file, merged into the path afterwards."""
    rest = list(args)
    for i, a in enumerate(rest):
        if a == "--benchmark-json" and i + 1 < len(rest):
            return rest[:i] + rest[i + 2 :], rest[i + 1]
        if a.startswith("--benchmark-json="):
            return rest[:i] + rest[i + 1 :], a.split("=", 1)[1]
    return rest, None


def pytest_args(args: list[str]) -> list[str]:
    """The user's pytest arguments, with the shipped benchmarks when no test path is given."""
    if any(a.startswith("--sharedconv-backend") for a in args):
        raise BenchUsageError(
            "pytest-bench chooses the backend per process; use --backends LIST instead of "
            "--sharedconv-backend"
        )
    if any(not a.startswith("-") and Path(a.split("::")[0]).exists() for a in args):
        return list(args)
    return [str(BENCHMARKS), *args]


def run_backends(names: list[str], args: list[str], json_out: str | None, echo=print) -> list[str]:
    """One pytest per backend; merges their JSON into ``json_out``. Returns what failed."""
    parts, failed = [], []
    with tempfile.TemporaryDirectory(prefix="sharedconv-bench-") as tmp:
        for name in names:
            part = Path(tmp) / f"{name}.json"
            cmd = [
                sys.executable, "-m", "pytest", *args, "--benchmark-enable",
                f"--sharedconv-backend={name}", f"--benchmark-json={part}", "-p", "no:cacheprovider",
            ]  # fmt: skip
            echo(f"== {name}: {' '.join(cmd[3:])}")
            code = subprocess.call(cmd)
            if code == 5:
                failed.append(f"{name} (no benchmark was collected: check the paths and -k)")
            elif code != 0:
                failed.append(f"{name} (pytest exit {code})")
            if part.exists():
                parts.append(part)
        if json_out and parts:
            Path(json_out).write_text(json.dumps(merge(parts), indent=2))
            echo(f"merged {len(parts)} file(s) into {json_out}")
    return failed
