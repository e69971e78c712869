"""The options the measuring commands share, parsed and checked where they enter.

Each ``*_from`` turns an option's text into the harness's value or raises a click error that
names the option, what was wrong and the valid choices; :class:`Selection` holds the shared
options of ``run`` and ``verify`` and builds their :class:`~sharedconv.harness.execute.Plan`.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from sharedconv.backends.contract import DEVICES, MODES
from sharedconv.backends.problem import DTYPES, ConvProblem, ProblemError, parse_problems
from sharedconv.backends.registry import (
    BackendLoadError,
    UnknownBackendError,
    load_backend,
    parse_backend_list,
)
from sharedconv.backends.suites import SuiteError, load_suite

from . import allocators
from .worker import default_threads


def problems_from(
    shapes: tuple[str, ...], suite: str | None, dtype: str | None, default_suite: str
) -> list[ConvProblem]:
    if shapes and suite:
        raise click.UsageError("give either --shape or --suite, not both")
    problems: list[ConvProblem] = []
    if shapes:
        for text in shapes:
            if dtype and "dtype=" not in text:
                text = f"{text},dtype={dtype}"
            try:
                problems.extend(parse_problems(text))
            except ProblemError as e:
                raise click.BadParameter(str(e), param_hint="--shape") from None
        return list(dict.fromkeys(problems))
    problems = []
    for name in (suite or default_suite).split(","):
        try:
            problems.extend(load_suite(name.strip(), dtype).problems)
        except SuiteError as e:
            raise click.BadParameter(str(e), param_hint="--suite") from None
    return list(dict.fromkeys(problems))


DEFAULT_BUDGET = 2.0


def suite_budget(shapes: tuple[str, ...], suite: str | None, default_suite: str) -> float:
    """Seconds per case when --budget is not given: the largest the chosen suites declare,
    2 s for suites that declare none and for --shape grids."""
    if shapes:
        return DEFAULT_BUDGET
    budgets = [
        load_suite(name.strip()).budget or DEFAULT_BUDGET
        for name in (suite or default_suite).split(",")
    ]
    return max(budgets)


def backends_from(text: str | None) -> list[str]:
    try:
        return parse_backend_list(text)
    except UnknownBackendError as e:
        raise click.BadParameter(str(e), param_hint="--backends") from None


def strategies_from(text: str | None, backends: list[str]) -> list[str] | None:
    if not text:
        return None
    from .discovery import faults

    wanted = [s.strip() for s in text.split(",") if s.strip()]
    known: set[str] = set()
    current: dict[str, str] = {}  # a renamed strategy's old name -> its name now
    crashing = faults(backends)
    for name in backends:
        if name in crashing:
            continue
        try:
            strategies = load_backend(name).strategies
        except BackendLoadError:
            continue
        known.update(s.name for s in strategies)
        current.update({old: s.name for s in strategies for old in s.formerly})
    wanted = [s if s in known else current.get(s, s) for s in wanted]
    unknown = [s for s in wanted if s not in known]
    if unknown:
        raise click.BadParameter(
            f"no selected backend has strategy {', '.join(unknown)}; valid: {', '.join(sorted(known))}",
            param_hint="--strategies",
        )
    return wanted


def modes_from(mode: str) -> list[str]:
    return list(MODES) if mode == "both" else [mode]


def device_from(device: str) -> str:
    return "cuda" if device == "gpu" else device


def threads_from(threads: int | None) -> int:
    if threads is None:
        return default_threads()
    most = os.cpu_count() or 1
    if not 1 <= threads <= most:
        raise click.BadParameter(
            f"must be between 1 and this machine's {most} logical cores, got {threads}",
            param_hint="--threads",
        )
    return threads


class Finite(click.ParamType):
    """A float that must be finite and inside ``(low, high]`` (``low`` itself allowed when
    ``low_open`` is False): click's FloatRange lets ``nan`` through every comparison."""

    name = "number"

    def __init__(self, low: float, high: float, low_open: bool = True):
        self.low, self.high, self.low_open = low, high, low_open

    def convert(self, value: Any, param: Any, ctx: Any) -> float:
        try:
            v = float(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a number", param, ctx)
        if not math.isfinite(v):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        too_low = v <= self.low if self.low_open else v < self.low
        if too_low or v > self.high:
            bracket = "(" if self.low_open else "["
            self.fail(f"{value!r} is outside {bracket}{self.low:g}, {self.high:g}]", param, ctx)
        return v


SECONDS = Finite(0, 24 * 3600)  # --timeout, --budget: more than 0, at most a day


def mallocs_from(text: str | None) -> list[str]:
    try:
        return allocators.parse(text)
    except allocators.AllocatorError as e:
        raise click.BadParameter(str(e), param_hint="--malloc") from None


MALLOC_OPTION = click.option(
    "--malloc",
    metavar="NAME[,NAME]",
    default=None,
    help="The workers' C allocator, or several to measure every case under each in turn: "
    "jemalloc (default; purging off), tcmalloc, glibc-tuned (no mmap for large blocks, one "
    "arena), system (your environment as it is: the out-of-the-box number), fixed (the first "
    "wave's glibc thresholds). Default: jemalloc, or glibc-tuned when libjemalloc is not "
    "installed. Under glibc's defaults a large output is fresh memory, page faults included, on "
    "every call; see docs/allocator.md. Recorded with the run and every case.",
)


def selection_options(default_suite: str):
    """The options every measuring command shares, handed to the command as one
    :class:`Selection` (its first argument)."""

    def decorate(f):
        @functools.wraps(f)
        def with_selection(**kwargs: Any) -> Any:
            selection = Selection(default_suite, **{k: kwargs.pop(k) for k in SELECTION_KEYS})
            return f(selection, **kwargs)

        for option in reversed(
            [
                click.option(
                    "--backends",
                    "-b",
                    metavar="LIST",
                    help="Comma-separated backend names (default: all registered).",
                ),
                click.option(
                    "--strategies",
                    "-s",
                    metavar="LIST",
                    help="Comma-separated strategy names (default: all).",
                ),
                click.option(
                    "--shape",
                    "shapes",
                    multiple=True,
                    metavar="TEXT",
                    help="A problem or grid, e.g. 'B=10,C=3,H=200,W=200,N=20,K=5' or 'C=1..128:x2,H=64,N=16,K=3,5'. Repeatable.",
                ),
                click.option(
                    "--suite",
                    metavar="NAME[,NAME]",
                    help=f"Named suite(s), comma-separated (default: {default_suite}); see `sharedconv suites`.",
                ),
                click.option(
                    "--mode",
                    type=click.Choice(["forward", "train", "both"]),
                    default="both",
                    show_default=True,
                ),
                click.option(
                    "--dtype",
                    type=click.Choice(DTYPES),
                    help="Dtype for problems that do not fix their own (default float32).",
                ),
                click.option(
                    "--device",
                    type=click.Choice([*DEVICES, "gpu"]),
                    default="cpu",
                    show_default=True,
                ),
                click.option(
                    "--threads",
                    type=int,
                    help="Threads for every framework (default: the cores this process may use).",
                ),
                MALLOC_OPTION,
                click.option(
                    "--seed",
                    type=click.IntRange(0, 2**32 - 1),
                    default=0,
                    show_default=True,
                    help="Seed of the random inputs.",
                ),
                click.option(
                    "--timeout",
                    type=SECONDS,
                    default=120.0,
                    show_default=True,
                    help="Seconds one case may take before its worker is killed.",
                ),
                click.option(
                    "--verbose",
                    "-v",
                    is_flag=True,
                    help="Show every case, and let frameworks print their logs.",
                ),
            ]
        ):
            with_selection = option(with_selection)
        return with_selection

    return decorate


SELECTION_KEYS = (
    "backends", "strategies", "shapes", "suite", "mode", "dtype", "device", "threads", "malloc",
    "seed", "timeout", "verbose",
)  # fmt: skip


@dataclass
class Selection:
    """What to measure, as the shared options gave it; :meth:`plan` checks and builds it."""

    default_suite: str
    backends: str | None
    strategies: str | None
    shapes: tuple[str, ...]
    suite: str | None
    mode: str
    dtype: str | None
    device: str
    threads: int | None
    malloc: str | None
    seed: int
    timeout: float
    verbose: bool

    def plan(self, **extra: Any):
        from .execute import Plan

        names = backends_from(self.backends)
        return Plan(
            backends=names,
            problems=problems_from(self.shapes, self.suite, self.dtype, self.default_suite),
            modes=modes_from(self.mode),
            strategies=strategies_from(self.strategies, names),
            device=device_from(self.device),
            threads=threads_from(self.threads),
            mallocs=mallocs_from(self.malloc),
            seed=self.seed,
            timeout=self.timeout,
            verbose=self.verbose,
            **extra,
        )

    def suite_label(self) -> str | None:
        return None if self.shapes else self.suite

    def budget(self) -> float:
        return suite_budget(self.shapes, self.suite, self.default_suite)


def keras_backends_from(text: str | None) -> list[str]:
    """The installed Keras backends among ``--backends`` (default: every keras-* backend)."""
    names = (
        backends_from(text) if text else [n for n in backends_from(None) if n.startswith("keras-")]
    )
    not_keras = [n for n in names if not n.startswith("keras-")]
    if not_keras:
        raise click.BadParameter(
            f"the seed question is about Keras; not Keras backends: {', '.join(not_keras)}",
            param_hint="--backends",
        )
    from .discovery import faults

    crashing = faults(names)
    available = [n for n in names if n not in crashing and load_backend(n).available() is None]
    if not available:
        raise click.UsageError(
            "no Keras backend is installed: pip install 'sharedconv[keras,tensorflow]' (or jax, torch)"
        )
    return available


@dataclass(frozen=True)
class Executor:
    """Where the cases run: here (``local``) or on the nodes of a Ray cluster (``ray``)."""

    kind: str = "local"
    address: str | None = None  # Ray: auto, host:port or ray://host:port
    nodes: str | None = None  # Ray: the nodes to use (harness.cluster.select_nodes)

    def to_meta(self) -> dict[str, Any]:
        return {"kind": self.kind, "address": self.address, "nodes": self.nodes}

    @classmethod
    def from_meta(cls, meta: dict[str, Any] | None) -> Executor:
        meta = meta if isinstance(meta, dict) else {}
        kind = meta.get("kind") if meta.get("kind") in ("local", "ray") else "local"
        return cls(kind, meta.get("address"), meta.get("nodes"))


def executor_options(command: Callable) -> Callable:
    """``--executor``, ``--address`` and ``--nodes``, given to the command as ``executor``."""

    @functools.wraps(command)
    def with_executor(*args: Any, **kwargs: Any) -> Any:
        kind, address, nodes = (kwargs.pop(k) for k in ("executor", "address", "nodes"))
        if kind != "ray" and (address or nodes):
            raise click.UsageError("--address and --nodes choose Ray nodes: add --executor ray")
        kwargs["executor"] = Executor(kind, address, nodes) if kind else None
        return command(*args, **kwargs)

    for option in reversed(
        [
            click.option(
                "--executor",
                type=click.Choice(["local", "ray"]),
                default=None,
                help="Where cases run: here (default), or on the nodes of a Ray cluster, one case "
                "per node at a time, every record naming its machine (docs/cluster.md).",
            ),
            click.option(
                "--address",
                metavar="auto|HOST:PORT|ray://HOST:PORT",
                help="With --executor ray: the cluster (default: auto, the one this machine is in).",
            ),
            click.option(
                "--nodes",
                metavar="SELECTOR",
                help="With --executor ray: only these nodes, comma-separated node-id prefixes, IP "
                "addresses, host names or resource:NAME (default: every node offering 'sharedconv').",
            ),
        ]
    ):
        with_executor = option(with_executor)
    return with_executor


CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
RESULTS_OPTION = click.option(
    "--results",
    metavar="DIR",
    help="Folder of runs (default: ./results, which holds the reference runs).",
)


def results_root(results: str | None) -> Path:
    return Path(results) if results else Path("results")


def read_run_arg(ref: str, results: str | None, hint: str):
    """The run a command argument names: a run folder, or a run id inside ``--results``;
    its damaged lines are reported, never dropped silently."""
    from .store import StoreError, read_run

    path = Path(ref) if Path(ref).is_dir() else results_root(results) / ref
    try:
        run = read_run(path)
    except StoreError as e:
        raise click.BadParameter(
            f"{e}. Give a run folder, or a run id inside --results (list them with "
            "`sharedconv runs`).",
            param_hint=hint,
        ) from None
    for warning in run.warnings:
        click.echo(f"warning: {warning}", err=True)
    return run


THRESHOLD_OPTION = click.option(
    "--threshold",
    type=Finite(0, 100),
    default=0.10,
    show_default=True,
    help="Flag cases whose median changed by more than this fraction.",
)
