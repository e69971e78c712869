"""Run backends x strategies x problems x modes through worker processes.

The plan is built in this process from the strategy descriptors alone (no framework is
imported here), so skip reasons and unavailable backends are known before any worker
starts. The oracle is computed once per problem and shared with the workers as ``.npy``
files. Every case ends as one record, whatever happens to its worker.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sharedconv.backends import oracle
from sharedconv.backends.contract import Strategy
from sharedconv.backends.problem import ConvProblem, input_fingerprint, make_inputs
from sharedconv.backends.registry import BackendLoadError, get_spec, load_backend

from . import allocators
from .cases import one_blas_thread
from .discovery import faults
from .memory import available_bytes, refuse_if_too_big
from .worker import WorkerFault, WorkerProcess, default_threads

RECORD_SCHEMA = 1


@dataclass(frozen=True)
class CaseKey:
    backend: str
    strategy: str
    problem: ConvProblem
    mode: str
    device: str
    malloc: str = "system"

    def ident(self) -> str:
        return (
            f"{self.backend}/{self.strategy}/{self.problem.slug()}/{self.mode}/{self.device}"
            f"/{self.malloc}"
        )


@dataclass
class Plan:
    backends: list[str]
    problems: list[ConvProblem]
    modes: list[str]
    strategies: list[str] | None = None  # None: all of each backend's strategies
    device: str = "cpu"
    threads: int = field(default_factory=default_threads)
    seed: int = 0
    timeout: float = 120.0
    timing: dict[str, Any] | None = None  # None: verify only
    digest: bool = False  # record a digest of each output y (bit-identity checks)
    deadline: float | None = None  # time.monotonic() after which cases are skipped, not run
    # seconds each backend may take from its first case on; its cases after that are skipped
    # (the GPU check shares a lease's minutes equally among the frameworks)
    backend_seconds: float | None = None
    verbose: bool = False
    # the workers' C allocators (harness.allocators); several: every case under each, in turn
    mallocs: list[str] = field(default_factory=lambda: [allocators.default()])
    # times every case is measured, each time in a fresh worker (runner.merge_rounds)
    rounds: int = 1
    # time each problem's candidates together, in random-order cycles (harness.interleave)
    interleave: bool = False
    tf32: bool = False  # float32 may use TF32 tensor cores on a GPU (Backend.tf32)
    # every case in a worker of its own: its first call meets empty framework pools, so the
    # first-call memory reading is cold for every case (not only a worker's first)
    isolate: bool = False


# Above this many output elements the oracle checks a seeded sample of whole images.
SAMPLE_ABOVE_ELEMENTS = 100_000_000
SAMPLE_IMAGES = 48


def checked_images(problem: ConvProblem) -> int | None:
    """How many of the problem's ``B*C`` images the oracle checks, or None for all of them."""
    y_elements = int(np.prod(problem.y_shape))
    if y_elements <= SAMPLE_ABOVE_ELEMENTS or problem.B * problem.C <= SAMPLE_IMAGES:
        return None
    return SAMPLE_IMAGES


def sample_images(problem: ConvProblem, seed: int) -> np.ndarray | None:
    """Flat (b*C + c) indices of the images the oracle checks, or None for all of them.

    Images are independent in y and dx (no channel or batch mixing), so a sample of whole
    images is checked exactly; dw and db mix every image and are always computed in full.
    """
    count = checked_images(problem)
    if count is None:
        return None
    rng = np.random.default_rng(seed + 7919)
    return np.sort(rng.choice(problem.B * problem.C, size=count, replace=False))


def too_big(problem: ConvProblem, strategy: Strategy, mode: str, have: int) -> str | None:
    """Why the case would not fit ``have`` bytes, or None: ``memory.refuse_if_too_big`` with
    the oracle's reference counted as the images the worker loads (``checked_images``)."""
    return refuse_if_too_big(
        problem, strategy, mode, have=have, checked_images=checked_images(problem)
    )


class OracleStore:
    """The oracle's arrays, computed once per (problem, seed) and saved for the workers."""

    def __init__(self, folder: Path | None = None):
        self._own = folder is None
        self.folder = Path(folder or tempfile.mkdtemp(prefix="sharedconv-oracle-"))
        self._done: dict[tuple, Path] = {}
        self.seconds = 0.0

    def path(self, problem: ConvProblem, seed: int, mode: str) -> Path:
        # Train-mode inputs extend forward ones (same x, w, b), so one train oracle serves both.
        key = (problem, seed, mode)
        if key in self._done:
            return self._done[key]
        t0 = time.perf_counter()
        target = self.folder / f"{problem.slug()}-seed{seed}-{mode}"
        target.mkdir(parents=True, exist_ok=True)
        arrays = make_inputs(problem, seed, mode)
        (target / "fingerprint.txt").write_text(
            input_fingerprint({k: v for k, v in arrays.items() if k != "dy"})
        )
        sample = sample_images(problem, seed)
        # on one BLAS thread: the oracle runs in the parent just before a worker times the
        # problem's first case, and OpenBLAS's threads keep spinning for about 0.1 s after a
        # call on its pool, on the cores that case's first blocks need (`perf` of a run's
        # parent: half its samples in `blas_thread_server` as torch's first case began)
        with one_blas_thread():
            if sample is None:
                reference = oracle.reference(problem, arrays, mode)
            else:
                reference = self._sampled_reference(problem, arrays, mode, sample)
        if sample is not None:
            np.save(target / "sample_images.npy", sample, allow_pickle=False)
        del arrays
        for name, a in reference.items():
            np.save(target / f"{name}.npy", a, allow_pickle=False)
        self._done[key] = target
        self.seconds += time.perf_counter() - t0
        return target

    @staticmethod
    def _sampled_reference(
        problem: ConvProblem, arrays: dict[str, np.ndarray], mode: str, sample: np.ndarray
    ) -> dict[str, np.ndarray]:
        B, C, H, W = problem.x_shape
        sub = problem.with_(B=len(sample), C=1)
        sub_arrays = {
            "x": arrays["x"].reshape(B * C, 1, H, W)[sample],
            "w": arrays["w"],
            **({"b": arrays["b"]} if problem.bias else {}),
        }
        ref = {
            "y": oracle.forward(sub, sub_arrays["x"], sub_arrays["w"], sub_arrays.get("b")).reshape(
                len(sample), *problem.y_shape[2:]
            )
        }
        if mode == "train":
            dy_sub = arrays["dy"].reshape(B * C, 1, *problem.y_shape[2:])[sample]
            ref["dx"] = oracle.gradients(sub, sub_arrays["x"], arrays["w"], dy_sub)["dx"].reshape(
                len(sample), H, W
            )
            full = oracle.gradients(problem, arrays["x"], arrays["w"], arrays["dy"])
            ref["dw"] = full["dw"]
            if problem.bias:
                ref["db"] = full["db"]
        return ref

    def drop(self, problem: ConvProblem) -> None:
        for key in [k for k in self._done if k[0] == problem]:
            shutil.rmtree(self._done.pop(key), ignore_errors=True)

    def close(self) -> None:
        if self._own:
            shutil.rmtree(self.folder, ignore_errors=True)


def base_record(key: CaseKey, threads: int) -> dict[str, Any]:
    p = key.problem
    return {
        "schema": RECORD_SCHEMA,
        "case": key.ident(),
        "backend": key.backend,
        "strategy": key.strategy,
        "problem": p.to_text(),
        "params": p.to_dict(),
        "mode": key.mode,
        "device": key.device,
        "malloc": key.malloc,
        "dtype": p.dtype,
        "threads": threads,
        "flops": p.flops_for(key.mode),
        "fewest_bytes": p.fewest_bytes(key.mode),
    }


def plan_cases(plan: Plan) -> Iterator[tuple[CaseKey, dict[str, Any] | None, dict[str, Any]]]:
    """Every case in order: its key, a finished record for those decided without a worker
    (unavailable backend, unsupported problem, too big for this machine's memory) or None,
    and the strategy's description for the record."""
    memory_at_start = available_bytes()  # one worker at a time: what a fresh worker can have
    crashing = faults(plan.backends)  # tried in a child first: a plugin cannot take the run down
    for name in plan.backends:
        spec = get_spec(name)
        try:
            if name in crashing:
                raise BackendLoadError(f"unavailable: {crashing[name]}")
            backend = load_backend(name)
            missing = backend.available()
        except BackendLoadError as e:
            backend, missing = None, str(e)
        names = [s.name for s in backend.strategies] if backend is not None else ["*"]
        if plan.strategies:
            names = [n for n in names if n in plan.strategies] if backend is not None else ["*"]
        for problem in plan.problems:
            for mode in plan.modes:
                for sname, malloc in ((s, m) for s in names for m in plan.mallocs):
                    key = CaseKey(name, sname, problem, mode, plan.device, malloc)
                    if backend is None or missing:
                        hint = backend.install_hint if backend is not None else spec.install_hint
                        reason = missing or "unavailable"
                        if hint and hint not in reason:
                            reason = f"{reason} (install: {hint})"
                        yield key, {"status": "unavailable", "reason": reason}, {}
                        continue
                    strategy = backend.strategy(sname)
                    meta = {
                        "seed_option": strategy.seed_option,
                        "input_layout": strategy.input_layout,
                        "output_layout": strategy.output_layout,
                        "tags": list(strategy.tags),
                        "timed_region": strategy.timed,
                        **({"base": strategy.base, "form": strategy.form} if strategy.form else {}),
                    }
                    why = backend.supports(problem, strategy, plan.device, mode)
                    if not why and plan.device == "cpu":
                        # one worker per allocator is alive for the backend
                        have = memory_at_start // len(plan.mallocs)
                        why = too_big(problem, strategy, mode, have)
                    yield key, ({"status": "skipped", "reason": why} if why else None), meta


def past_deadline(plan: Plan) -> dict[str, Any] | None:
    """The outcome of a case not started because the run's time budget is spent, else None."""
    if plan.deadline is not None and time.monotonic() > plan.deadline:
        return {"status": "skipped", "reason": "not run: the time budget of this run was spent"}
    return None


class BackendShares:
    """``Plan.backend_seconds``: each backend's time counts from its first case."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.started: dict[str, float] = {}

    def spent(self, backend: str) -> dict[str, Any] | None:
        if self.seconds is None:
            return None
        start = self.started.setdefault(backend, time.monotonic())
        if time.monotonic() - start > self.seconds:
            return {
                "status": "skipped",
                "reason": f"not run: {backend}'s share of the time budget "
                f"({self.seconds:.0f} s) was spent",
            }
        return None


def hello_once(
    key: CaseKey,
    worker: WorkerProcess,
    seen: set[tuple[str, str]],
    on_worker: Callable[[str, dict[str, Any]], None] | None,
) -> Callable[[], dict[str, Any]]:
    """Starts the worker when needed and reports its hello once per (backend, allocator)."""

    def ensure() -> dict[str, Any]:
        hello = worker.ensure()
        if (key.backend, key.malloc) not in seen:
            seen.add((key.backend, key.malloc))
            if on_worker is not None:
                on_worker(key.backend, {**hello, "malloc": key.malloc})
        return hello

    return ensure


def run_case(
    plan: Plan,
    key: CaseKey,
    record: dict[str, Any],
    worker: WorkerProcess,
    store: OracleStore,
    ensure: Callable[[], dict[str, Any]],
    timing: dict[str, Any] | None = None,
    hold: bool = False,
) -> None:
    """One case through its worker, into ``record``: verified against the oracle, its memory
    measured and (with ``timing``, default the plan's) timed. ``hold``: the worker keeps the
    prepared call for interleaved turns (:mod:`.interleave`)."""
    t0 = time.perf_counter()
    try:
        hello = ensure()
        if hello.get("available"):
            record.update(status="unavailable", reason=hello["available"])
            return
        oracle_mode = "train" if "train" in plan.modes else "forward"
        folder = store.path(key.problem, plan.seed, oracle_mode)
        request = {
            "op": "case",
            "backend": key.backend,
            "strategy": key.strategy,
            "problem": key.problem.to_dict(),
            "mode": key.mode,
            "device": key.device,
            "seed": plan.seed,
            "oracle": str(folder),
            "timing": plan.timing if timing is None else timing,
            "digest": plan.digest,
            **({"hold": key.ident()} if hold else {}),
        }
        answer = worker.call(request, plan.timeout)
        answer.pop("op", None)
        record.update(answer)
    except WorkerFault as fault:
        record.update(fault.record())
    finally:
        record["wall_s"] = time.perf_counter() - t0


class CaseRunner:
    """Cases one at a time through one worker per (backend, allocator), one framework in
    memory at a time: what a local run does, and what each node of a cluster run does
    (:mod:`.cluster`), so the two measure alike."""

    def __init__(
        self,
        plan: Plan,
        oracle_store: OracleStore | None = None,
        on_worker: Callable[[str, dict[str, Any]], None] | None = None,
    ):
        self.plan = plan
        self.store = oracle_store or OracleStore()
        self._own_store = oracle_store is None
        self.on_worker = on_worker
        # one worker per (backend, allocator): several allocators alternate case by case
        self.workers: dict[tuple[str, str], WorkerProcess] = {}
        self.used: set[tuple[str, str]] = set()  # the workers that have had a case
        self.seen_hello: set[tuple[str, str]] = set()

    def _worker(self, backend: str, malloc: str) -> WorkerProcess:
        plan = self.plan
        worker = self.workers.get((backend, malloc))
        if worker is None:
            worker = self.workers[(backend, malloc)] = WorkerProcess(
                backend,
                plan.threads,
                plan.device,
                verbose=plan.verbose,
                malloc=malloc,
                tf32=plan.tf32,
            )
        return worker

    def prestart(self, keys: Iterable[CaseKey]) -> None:
        """Starts the workers of these cases all at once, so their frameworks import side by
        side, and waits for every one to be ready before any case runs: no case is timed
        while another framework is still importing."""
        started = []
        for backend, malloc in dict.fromkeys((k.backend, k.malloc) for k in keys):
            worker = self._worker(backend, malloc)
            if not worker.alive() and worker.spawn_ahead():
                started.append(worker)
        for worker in started:
            worker.await_hello()

    def run(self, key: CaseKey, record: dict[str, Any]) -> dict[str, Any]:
        """Runs one undecided case into ``record`` (a ``base_record``) and returns it."""
        plan = self.plan
        # the plan is backend-major, so a backend that had its cases is done once another's
        # case comes: its workers close (those started ahead of their cases wait their turn)
        for other in [k for k in self.workers if k[0] != key.backend and k in self.used]:
            self.workers.pop(other).close()
        worker = self._worker(key.backend, key.malloc)
        # the worker runs its first case (started for it or ahead of it, or after a fault):
        # nothing an earlier case allocated sits in the framework's pools, so the first call's
        # memory is cold
        record["fresh_worker"] = not worker.alive() or (key.backend, key.malloc) not in self.used
        self.used.add((key.backend, key.malloc))
        ensure = hello_once(key, worker, self.seen_hello, self.on_worker)
        try:
            run_case(plan, key, record, worker, self.store, ensure)
        finally:
            if plan.isolate:
                self.workers.pop((key.backend, key.malloc)).close()
                self.used.discard((key.backend, key.malloc))
        return record

    def close(self) -> None:
        for w in self.workers.values():
            w.close()
        self.workers.clear()
        if self._own_store:
            self.store.close()


# What a framework's worker may hold once started and idle, the memory that starting every
# worker ahead sets aside (`python scripts/check_idle_workers.py --pairs 0`: TensorFlow's and
# Keras-on-TensorFlow's 0.72 GiB, the largest; PyTorch's 0.28, NumPy's 0.10).
IDLE_WORKER_BYTES = 1 << 30
START_AHEAD_ENV = "SHAREDCONV_START_AHEAD"


def start_ahead(plan: Plan, keys: list[CaseKey]) -> bool:
    """Whether :meth:`CaseRunner.prestart` may start these cases' workers together: on the CPU
    (GPU frameworks each claim device memory when they start), not with ``isolate`` (a worker
    per case), and only when the idle workers leave the largest case the memory it would have
    had with one worker alive (``refuse_if_too_big`` with what the idle workers leave).
    ``SHAREDCONV_START_AHEAD=0`` starts each worker at its backend's first case instead
    (scripts/bench_smoke.py compares)."""
    workers = {(k.backend, k.malloc) for k in keys}
    if plan.device != "cpu" or plan.isolate or len(workers) < 2:
        return False
    if os.environ.get(START_AHEAD_ENV, "1").strip() == "0":
        return False
    have = available_bytes() - IDLE_WORKER_BYTES * len(workers)
    return not any(
        too_big(k.problem, load_backend(k.backend).strategy(k.strategy), k.mode, have) for k in keys
    )


def execute(
    plan: Plan,
    on_record: Callable[[dict[str, Any]], None],
    skip: Iterable[str] = (),
    oracle_store: OracleStore | None = None,
    on_worker: Callable[[str, dict[str, Any]], None] | None = None,
) -> None:
    """Run every case of ``plan``; ``on_record`` receives each finished record in order.

    ``skip`` holds case idents already done (``--resume``). ``on_worker`` receives each
    backend's hello (versions and thread facts) once.
    """
    done = set(skip)
    runner = CaseRunner(plan, oracle_store, on_worker)
    shares = BackendShares(plan.backend_seconds)
    cases = [c for c in plan_cases(plan) if c[0].ident() not in done]
    try:
        todo = [key for key, decided, _ in cases if decided is None]
        if start_ahead(plan, todo):
            runner.prestart(todo)
        # plan_cases is backend-major: one framework computes at a time.
        for key, decided, meta in cases:
            record = {**base_record(key, plan.threads), **meta}
            decided = decided or past_deadline(plan) or shares.spent(key.backend)
            if decided is not None:
                on_record({**record, **decided})
                continue
            on_record(runner.run(key, record))
    finally:
        runner.close()
