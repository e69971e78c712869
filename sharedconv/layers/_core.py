"""What the layers share: the problem a call is, the candidates, the choice and its cache.

A layer call is one :class:`~sharedconv.backends.problem.ConvProblem` (the shape, stride,
padding, dilation, bias and dtype of the call) in one mode (``forward``, or ``train``: forward
and backward) on one device. :func:`choose` answers "which strategy" for it, in this order:

1. the layer's own memo (a dict lookup per call: the dispatch cost);
2. ``SHAREDCONV_AUTOTUNE=0``: the fallback strategy, ``fold`` (deterministic, no timing);
3. a decision cached on disk for this machine (:class:`Cache`; ``sharedconv layers cache``);
4. stored sharedconv results for this machine, when the user points at them
   (``results=`` or ``SHAREDCONV_RESULTS``);
5. an autotune (:func:`autotune`): every candidate verified against the reference strategy on
   the call's inputs, timed with the harness's own timer (``harness.timing.steady_state``),
   the fastest verified one kept and cached.

Every candidate is a strategy of the layer's framework backend (``backends/torch_backend.py``,
``jax_backend.py``, ``tensorflow_backend.py``) wrapped in the layout permutations between the
layer's layout and the strategy's declared one: no strategy is written twice. The PyTorch
layer also offers sharedconv's own kernel (``backends/native_backend.py``) as the candidate
``native`` on the CPU: it takes PyTorch's CPU tensors without a copy.
"""

from __future__ import annotations

import contextlib
import fcntl
import gc
import json
import math
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..backends.agreement import bound_for, output_error, reduction_terms
from ..backends.contract import Strategy
from ..backends.layouts import permutation
from ..backends.problem import ConvProblem, ProblemError

AUTOTUNE_ENV = "SHAREDCONV_AUTOTUNE"
RESULTS_ENV = "SHAREDCONV_RESULTS"
CACHE_ENV = "SHAREDCONV_CACHE_DIR"
BUDGET_ENV = "SHAREDCONV_TUNE_BUDGET"
FALLBACK = "fold"
REFERENCE = "fold"
# a layer candidate that is not its framework's strategy: the native kernel with its outputs
# from the native output pool, stored in runs as the backend/strategy below; runs of the
# same kernel with np.empty outputs (``direct``, the only one before the pool) answer too
NATIVE = "native"
NATIVE_RECORD = ("native", "direct_pooled")
NATIVE_RECORDS = (NATIVE_RECORD, ("native", "direct"))


def layer_strategies(framework: str) -> list[str]:
    """The strategies a layer runs on ``framework`` ("torch", "jax" or "tensorflow"): its
    backend's, less the variants that compile a graph of their own (compile the whole model
    instead), and on torch ``native``, sharedconv's own kernel (CPU, float32/float64; it takes
    the tensors without a copy). Framework-free: the tables only."""
    if framework == "torch":
        from ..backends.torch_backend import STRATEGIES
    elif framework == "jax":
        from ..backends.jax_backend import STRATEGIES
    else:
        from ..backends.tensorflow_backend import STRATEGIES
    names = [s.name for s in STRATEGIES if not s.form]
    return names + [NATIVE] if framework == "torch" else names


DEFAULT_BUDGET = 1.0  # seconds of timing per new shape, spread over the candidates
HOPELESS = 10.0  # a candidate this much slower than the best at its probe is not probed again,
CHEAP_PROBE_S = 0.25  # unless probing it again is this cheap
PRUNE_FACTOR = (
    3.0  # a candidate whose warm call is this much slower than the best is not timed further
)
CACHE_SCHEMA = 1
PAIRED_BLOCK_S = 0.01  # a block of the paired timing: about this many seconds of calls
PAIRED_MIN_CYCLES = 6
PAIRED_PRECISION = 0.01  # the paired timing stops early once every ratio is known this closely
UNROLL_LIMIT = (
    32  # channels above which a compiled framework's "unrolled" strategies are not autotuned
)


class LayerError(ValueError):
    """A layer was configured or called in a way it cannot honour; the message says how to fix it."""


def autotune_enabled() -> bool:
    return os.environ.get(AUTOTUNE_ENV, "1").strip().lower() not in ("0", "off", "false", "no")


def tune_budget(budget: float | None) -> float:
    if budget is not None:
        return float(budget)
    text = os.environ.get(BUDGET_ENV)
    if text:
        try:
            value = float(text)
        except ValueError:
            raise LayerError(f"{BUDGET_ENV}={text!r} is not a number of seconds") from None
        if not (0 < value < 3600):
            raise LayerError(f"{BUDGET_ENV}={text!r}: give seconds between 0 and 3600")
        return value
    return DEFAULT_BUDGET


def pair(value: Any, what: str) -> tuple[int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value), int(value)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return int(value[0]), int(value[1])
    raise LayerError(f"{what} must be an integer or a pair of integers, got {value!r}")


def make_problem(
    x_shape: Sequence[int],
    layout: str,
    filters: int,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: Any,
    dilation: tuple[int, int],
    bias: bool,
    dtype: str,
) -> ConvProblem:
    """The problem one call computes; ``layout`` names the input's axes ("BCHW" or "BHWC")."""
    if len(x_shape) != 4:
        raise LayerError(f"the input must be 4-D ({', '.join(layout)}), got shape {tuple(x_shape)}")
    dims = dict(zip(layout, (int(d) for d in x_shape), strict=True))
    if not isinstance(padding, str) and tuple(padding) == (0, 0):
        padding = "valid"  # one spelling, so decisions and stored results match
    try:
        return ConvProblem(
            B=dims["B"],
            C=dims["C"],
            H=dims["H"],
            W=dims["W"],
            N=filters,
            KH=kernel[0],
            KW=kernel[1],
            stride=stride,
            padding=padding,
            dilation=dilation,
            bias=bias,
            dtype=dtype,
        )
    except ProblemError as e:
        raise LayerError(f"input of shape {tuple(x_shape)} ({layout}): {e}") from None


def check_filters(filters: Any) -> int:
    if isinstance(filters, bool) or not isinstance(filters, (int, np.integer)) or filters < 1:
        raise LayerError(f"filters must be a positive integer, got {filters!r}")
    return int(filters)


def check_strategy(strategy: str, offered: Sequence[str], where: str = "") -> None:
    """A layer's ``strategy`` argument: "auto" or a strategy the layer can run."""
    if strategy != "auto" and strategy not in offered:
        raise LayerError(
            f"unknown strategy {strategy!r}{where}; use 'auto' or one of: {', '.join(offered)}"
        )


def machine_id() -> str:
    """The machine a tuned choice is of: one model name covers VMs with and without AVX-512
    (where the native kernel's build, and so its speed, differs), so the vector ISA is in it."""
    from ..harness.machine import cpu_model, vector_isa

    return (
        f"{cpu_model()} / {vector_isa() or 'ISA unknown'} / {os.cpu_count()} logical cores"
        f" / {platform.machine()}"
    )


@dataclass(frozen=True)
class Key:
    """What a decision depends on; a change in any field means tuning again."""

    framework: str
    framework_version: str
    device: str  # "cpu" or the GPU's name
    threads: int
    machine: str
    problem: str
    mode: str
    layout: str  # "BCHW->BCNHW" etc.

    def text(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass
class Trial:
    """One candidate's verification and time in an autotune."""

    strategy: str
    median_s: float | None = None
    first_call_s: float | None = None
    verified: bool = False
    note: str = ""  # why it was refused or pruned
    paired: list[float] | None = None  # timed paired: its time over the pick's, 95% interval


TRIAL_FIELDS = frozenset(Trial.__dataclass_fields__)


@dataclass
class Choice:
    """What a layer picked for one problem, and why."""

    strategy: str
    source: str  # "pinned", "fallback", "cache", "results", "autotune"
    key: Key
    reason: str = ""
    trials: list[Trial] = field(default_factory=list)
    tuning_s: float | None = None
    created: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "strategy": self.strategy,
            "source": self.source,
            "key": asdict(self.key),
            "reason": self.reason,
            "trials": [asdict(t) for t in self.trials],
            "tuning_s": self.tuning_s,
            "created": self.created,
            "sharedconv": __version__,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Choice:
        return cls(
            strategy=str(data["strategy"]),
            source=str(data["source"]),
            key=Key(**data["key"]),
            reason=str(data.get("reason", "")),
            # fields a later version added are left out, not a damaged entry
            trials=[
                Trial(**{k: v for k, v in t.items() if k in TRIAL_FIELDS})
                for t in data.get("trials", [])
            ],
            tuning_s=data.get("tuning_s"),
            created=str(data.get("created", "")),
        )

    def describe(self) -> str:
        """A few lines for people: the pick, where it came from, the candidates' times."""
        lines = [f"{self.strategy} ({self.source}{': ' + self.reason if self.reason else ''})"]
        lines.append(
            f"  for {self.key.problem}, {self.key.mode}, {self.key.framework} on {self.key.device}"
        )
        for t in sorted(self.trials, key=lambda t: (t.median_s is None, t.median_s or 0)):
            time_text = f"{t.median_s * 1e3:9.3f} ms" if t.median_s is not None else "        -   "
            lines.append(f"  {t.strategy:<20} {time_text}  {t.note}".rstrip())
        if self.tuning_s is not None:
            lines.append(f"  tuning took {self.tuning_s:.2f} s")
        return "\n".join(lines)


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "sharedconv"


class Cache:
    """Decisions on disk, one JSON file per user (``layers.json`` in :func:`cache_dir`).

    Writes take an exclusive lock and replace the file atomically, so two processes tuning at
    once never damage it; a damaged or unreadable file is reported once and treated as empty
    (decisions are re-made, never a crash)."""

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else cache_dir()
        self.path = self.folder / "layers.json"
        self.problems: list[str] = []

    def _read(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            self.problems.append(f"{self.path} could not be read ({e.__class__.__name__}); ignored")
            return {}
        entries = data.get("entries") if isinstance(data, dict) else None
        if not isinstance(entries, dict) or data.get("schema") != CACHE_SCHEMA:
            self.problems.append(
                f"{self.path} is not a sharedconv layer cache (schema {CACHE_SCHEMA}); ignored"
            )
            return {}
        return entries

    def get(self, key: Key) -> Choice | None:
        entry = self._read().get(key.text())
        if entry is None:
            return None
        try:
            return Choice.from_dict(entry)
        except (KeyError, TypeError, ValueError):
            self.problems.append(f"{self.path}: a damaged entry for {key.problem}; tuning again")
            return None

    def entries(self) -> list[Choice]:
        out = []
        for entry in self._read().values():
            with contextlib.suppress(KeyError, TypeError, ValueError):
                out.append(Choice.from_dict(entry))
        return out

    @contextlib.contextmanager
    def _locked(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / "layers.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, entries: dict[str, Any]) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".layers.", suffix=".tmp")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"schema": CACHE_SCHEMA, "entries": entries}, f, indent=1, sort_keys=True)
        os.replace(tmp, self.path)

    def put(self, choice: Choice) -> None:
        try:
            with self._locked():
                entries = self._read()
                entries[choice.key.text()] = choice.to_dict()
                self._write(entries)
        except OSError as e:
            self.problems.append(
                f"the decision could not be cached in {self.folder} ({e.strerror}); it holds for this process only"
            )

    def clear(self) -> int:
        with self._locked():
            n = len(self._read())
            self._write({})
        return n


# --------------------------------------------------------------------------- stored results


def from_results(
    key: Key, problem: ConvProblem, offered: Sequence[str], folders: Sequence[Path]
) -> Choice | None:
    """The fastest passing strategy among ``offered`` in stored runs of this machine."""
    from ..backends.problem import parse_problem
    from ..harness.machine import same_cpu
    from ..harness.store import StoreError, read_run

    best: tuple[float, str, str] | None = None
    device = "cpu" if key.device == "cpu" else "cuda"
    for folder in folders:
        try:
            run = read_run(Path(folder))
        except StoreError:
            continue
        machine = run.meta.machine
        same_machine = machine is not None and (
            machine.gpu == key.device if device == "cuda" else same_cpu(machine)
        )
        if not same_machine:
            continue
        for r in run.cases:
            name = (
                NATIVE
                if (r.backend, r.strategy) in NATIVE_RECORDS
                else r.strategy
                if r.backend == key.framework
                else None
            )
            median = r.median
            if (
                name is None
                or name not in offered
                or r.mode != key.mode
                or r.device != device
                or r.status != "pass"
                or not median
            ):
                continue
            try:
                if parse_problem(r.problem) != problem:
                    continue
            except (ProblemError, ValueError):
                continue
            if best is None or median < best[0]:
                best = (median, name, run.run_id)
    if best is None:
        return None
    return Choice(
        strategy=best[1],
        source="results",
        key=key,
        reason=f"fastest passing case in run {best[2]} ({best[0] * 1e3:.3f} ms)",
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )


def results_folders(results: Any) -> list[Path]:
    if results is None:
        text = os.environ.get(RESULTS_ENV, "")
        return [Path(p) for p in text.split(os.pathsep) if p]
    if isinstance(results, (str, os.PathLike)):
        return [Path(results)]
    return [Path(p) for p in results]


# --------------------------------------------------------------------------- candidates


@dataclass
class Candidate:
    """One strategy as the layer runs it: ``fn(x, w, b)`` in the layer's layouts."""

    strategy: Strategy
    fn: Callable[..., Any]


def wrap(
    fn: Callable,
    strategy: Strategy,
    in_layout: str,
    out_layout: str,
    permute: Callable,
    weights: Callable | None = None,
) -> Callable:
    """``fn`` (in the strategy's declared layouts) behind the layer's layouts; with
    ``weights``, the call takes the layer's own parameter and makes the ``(N, KH, KW)`` filters
    from it inside the call (so a compiler sees, and the autotune times, what the layer runs)."""
    to_strategy = permutation(in_layout, strategy.input_layout)
    to_layer = permutation(strategy.output_layout, out_layout)
    identity_in = to_strategy == tuple(range(len(to_strategy)))
    identity_out = to_layer == tuple(range(len(to_layer)))

    def call(x: Any, w: Any, b: Any) -> Any:
        y = fn(x if identity_in else permute(x, to_strategy), w, b)
        return y if identity_out else permute(y, to_layer)

    if weights is None:
        return call

    def call_with_weights(x: Any, w: Any, b: Any) -> Any:
        return call(x, weights(w), b)

    return call_with_weights


def candidates_for(
    backend: Any,
    builders: dict[str, Callable],
    problem: ConvProblem,
    device: str,
    mode: str,
    in_layout: str,
    out_layout: str,
    permute: Callable,
    weights: Callable | None = None,
) -> tuple[dict[str, Candidate], dict[str, str]]:
    """The strategies a layer may run for ``problem``, and the reasons for the others
    (``weights``: see :func:`wrap`)."""
    offered: dict[str, Candidate] = {}
    refused: dict[str, str] = {}
    for s in backend.strategies:
        if s.name not in builders:
            refused[s.name] = "compiles a separate graph; compile the whole model instead"
            continue
        why = backend.supports(problem, s, device, mode)
        if why:
            refused[s.name] = why
            continue
        offered[s.name] = Candidate(
            s, wrap(builders[s.name], s, in_layout, out_layout, permute, weights)
        )
    return offered, refused


# --------------------------------------------------------------------------- autotune


@dataclass
class Runner:
    """How one framework runs a candidate: ``prepare(fn, mode) -> call`` returning outputs
    (``(y,)`` or ``(y, dx, dw[, db])``), ``sync(outputs)`` and ``to_numpy(outputs)``."""

    prepare: Callable[[Callable, str], Callable[[], tuple[Any, ...]]]
    sync: Callable[[Any], None]
    to_numpy: Callable[[Any], tuple[np.ndarray, ...]]
    # True when prepare() compiles ahead (JAX), so a first call is a warm one and a slow
    # candidate can be dropped after it; eager frameworks pay one-time costs in a first call
    compiled_ahead: bool = False


def _names(problem: ConvProblem, mode: str) -> tuple[str, ...]:
    if mode != "train":
        return ("y",)
    return ("y", "dx", "dw", "db") if problem.bias else ("y", "dx", "dw")


def _join(a: str, b: str) -> str:
    return f"{a}; {b}" if a else b


def _disagreements(
    problem: ConvProblem,
    names: Sequence[str],
    got: Sequence[np.ndarray],
    reference: Sequence[np.ndarray],
    tf32: bool = False,
) -> list[str]:
    bad = []
    if len(got) != len(reference):
        bad.append(f"{len(got)} outputs, expected {len(reference)}")
    for n, g, r in zip(names, got, reference, strict=False):
        err = output_error(np.asarray(g, dtype=np.float64), r)
        bound = 2 * bound_for(problem.dtype, reduction_terms(problem, n), tf32)
        if not err.shape_ok:
            bad.append(f"{n} has shape {np.shape(g)}, expected {r.shape}")
        elif not err.finite:
            bad.append(f"{n} is not finite")
        elif err.worst > bound:
            bad.append(f"{n} off by {err.worst:.1e} of max (bound {bound:.1e})")
    return bad


def _probe(call: Callable[[], Any], runner: Runner, clock: Callable[[], float]) -> float:
    """The fastest of at most 3 calls, stopping once 20 ms have been spent."""
    warm = math.inf
    start = clock()
    for _ in range(3):
        t0 = clock()
        out = call()
        runner.sync(out)
        warm = min(warm, clock() - t0)
        del out
        if clock() - start > 0.02:
            break
    return warm


def _paired_timing(
    trials: list[Trial],
    calls: dict[str, Callable[[], Any]],
    runner: Runner,
    block: Callable[[Callable[[], Any], Callable[[Any], None], int], float],
    budget: float,
    best: tuple[float, str],
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[float, str]:
    """The probed candidates within ``PRUNE_FACTOR`` of the best (``calls``) timed together,
    paired: blocks of about ``PAIRED_BLOCK_S`` of each in turn, a new random order every cycle
    (:func:`harness.interleave.interleave`, the harness's own schedule), for about ``budget``
    seconds (at least ``PAIRED_MIN_CYCLES`` cycles). Each is ranked by the median over cycles
    of its time over the best probe's candidate in the same cycle (``harness.stats.paired_ratio``),
    so a slow spell that lasts a cycle slows both sides of every ratio and decides nothing.

    Before, each candidate had a median of its own, taken seconds apart from the others', and
    only those within 25% of the best went on to rounds: in docs/layers.md's benchmark such
    medians put two strategies 1.29x and 1.75x behind the pick, where paired they were 1.17x and
    1.07x faster than it, so they never reached the rounds. A candidate's ``median_s`` becomes the reference candidate's
    median in these cycles times its ratio, its ``paired`` the ratio to the pick with its 95%
    interval."""
    from ..harness.interleave import interleave
    from ..harness.stats import paired_estimate, paired_ratio

    timed = []
    for t in trials:
        if t.strategy not in calls or t.median_s is None:
            continue
        if t.median_s > PRUNE_FACTOR * best[0]:  # probed before a faster one came
            t.note = _join(
                t.note, f"best warm call over {PRUNE_FACTOR:g}x the best call: not timed further"
            )
            continue
        timed.append(t)
    if len(timed) < 2:
        for t in timed:
            t.note = _join(t.note, "the only candidate within reach: not timed further")
        return best
    sizes = {t.strategy: max(1, round(PAIRED_BLOCK_S / max(t.median_s, 1e-9))) for t in timed}
    times = interleave(
        [t.strategy for t in timed],
        lambda name: block(calls[name], runner.sync, sizes[name]) / sizes[name],
        budget,
        precision=PAIRED_PRECISION,
        clock=clock,
        seed=len(timed),
        min_cycles=PAIRED_MIN_CYCLES,
    )
    pivot = best[1]
    to_pivot = {name: paired_estimate(times[name], times[pivot]) for name in times}
    winner = min(to_pivot, key=lambda name: (to_pivot[name], name != pivot))
    pivot_median = statistics.median(times[pivot])
    cycles = len(times[pivot])
    for t in timed:
        t.median_s = pivot_median * to_pivot[t.strategy]
        if t.strategy == winner:
            t.note = _join(t.note, f"paired, {cycles} cycles: the pick")
            continue
        ratio, low, high = paired_ratio(times[t.strategy], times[winner])
        t.paired = [ratio, low, high]
        t.note = _join(
            t.note, f"paired, {cycles} cycles: {ratio:.3f}x the pick (95% CI {low:.3f}-{high:.3f})"
        )
    return (pivot_median * to_pivot[winner], winner)


def autotune(*args: Any, **kwargs: Any) -> Choice:
    """:func:`_autotune` with Python's cyclic garbage collector paused: a full collection in a
    process holding a framework takes tens of milliseconds, and one landing in a candidate's
    calls would decide the pick."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return _autotune(*args, **kwargs)
    finally:
        if enabled:
            gc.enable()


def _autotune(
    key: Key,
    problem: ConvProblem,
    candidates: dict[str, Candidate],
    runner: Runner,
    budget: float,
    clock: Callable[[], float] = time.perf_counter,
    tf32: bool = False,
    block: Callable[[Callable[[], Any], Callable[[Any], None], int], float] | None = None,
) -> Choice:
    """Verify every candidate against the reference, time the verified ones, keep the fastest.

    The reference is ``fold`` (the framework's own convolution, verified against the float64
    oracle in every sharedconv run); a candidate agrees when each output is within twice the
    harness's bound for the dtype (both sides carry rounding). Each agreeing one is probed (the
    fastest of a few calls); those within ``PRUNE_FACTOR`` of the best probe are timed together,
    paired (:func:`_paired_timing`). ``block`` is the timer (seconds for a given number of
    calls; default the harness's ``timed_block``), a parameter so the selection rules can be
    tested with fake times.
    """
    from ..harness.cases import one_blas_thread

    start = clock()
    names = _names(problem, key.mode)
    ref_name = REFERENCE if REFERENCE in candidates else next(iter(candidates))
    order = [ref_name, *(n for n in candidates if n != ref_name)]
    reference: tuple[np.ndarray, ...] | None = None
    trials: list[Trial] = []
    timed_calls: dict[str, Callable[[], Any]] = {}
    deferred: list[tuple[Trial, Callable[[], Any]]] = []
    best: tuple[float, str] | None = None  # the fastest probe so far
    for name in order:
        trial = Trial(name)
        trials.append(trial)
        try:
            call = runner.prepare(candidates[name].fn, key.mode)
            t0 = clock()
            out = call()
            runner.sync(out)
            trial.first_call_s = clock() - t0
            got = runner.to_numpy(out)
            del out
        except Exception as e:  # a candidate that fails is refused, never fatal
            text = str(e).splitlines()[0][:160] if str(e) else ""
            trial.note = f"failed: {e.__class__.__name__}: {text}"
            continue
        if reference is None:
            reference = tuple(np.asarray(a, dtype=np.float64) for a in got)
            trial.verified = True
            trial.note = "reference"
        else:
            # on one BLAS thread: OpenBLAS's threads keep spinning after the comparison's norms,
            # into the candidate's timing right after it (harness.cases.one_blas_thread). Before
            # this, every candidate but the reference was timed beside them (docs/layers.md)
            with one_blas_thread():
                bad = _disagreements(problem, names, got, reference, tf32)
            if bad:
                trial.note = "refused: disagrees with the reference: " + "; ".join(bad)
                continue
            trial.verified = True
        if (
            runner.compiled_ahead
            and best is not None
            and trial.first_call_s > HOPELESS * best[0]
            and trial.first_call_s > CHEAP_PROBE_S
        ):
            # compiled ahead, so the first call is nearly warm: a hopeless and costly one
            # (XLA:CPU's grouped convolution backward takes seconds) is not called again
            trial.median_s = trial.first_call_s
            trial.note = _join(
                trial.note, f"first call over {HOPELESS:g}x the best call: not timed further"
            )
            continue
        # the best of a few warm calls decides whether the candidate is timed
        warm = _probe(call, runner, clock)
        trial.median_s = warm
        if best is not None and warm > PRUNE_FACTOR * best[0]:
            if warm <= HOPELESS * best[0] or warm < CHEAP_PROBE_S:
                # perhaps a cold call, or a slow spell of the machine: probed again at the end
                deferred.append((trial, call))
                continue
            trial.note = _join(
                trial.note, f"best warm call over {HOPELESS:g}x the best call: not timed further"
            )
            continue
        timed_calls[name] = call
        if best is None or warm < best[0]:
            best = (warm, name)
    for trial, call in deferred:  # every candidate has run by now: cold costs are paid
        assert best is not None
        warm = _probe(call, runner, clock)
        trial.median_s = warm
        if warm > PRUNE_FACTOR * best[0]:
            trial.note = _join(
                trial.note,
                f"best warm call over {PRUNE_FACTOR:g}x the best call, twice: not timed further",
            )
            continue
        trial.note = _join(trial.note, "slow at first, probed again after the others")
        timed_calls[trial.strategy] = call
        if warm < best[0]:
            best = (warm, trial.strategy)
    if best is not None:
        if block is None:
            from ..harness.timing import timed_block

            def block(call: Callable[[], Any], sync: Callable[[Any], None], n: int) -> float:
                return timed_block(call, sync, n, clock)

        best = _paired_timing(trials, timed_calls, runner, block, budget, best, clock)
    if best is None:
        raise LayerError(
            "no strategy could compute this call: "
            + "; ".join(f"{t.strategy}: {t.note}" for t in trials)
        )
    return Choice(
        strategy=best[1],
        source="autotune",
        key=key,
        reason=f"fastest of {sum(t.verified for t in trials)} verified candidates",
        trials=trials,
        tuning_s=clock() - start,
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )


@dataclass
class Selector:
    """A layer's decisions: a per-layer memo in front of :func:`choose`."""

    strategy: str = "auto"
    budget: float | None = None
    results: Any = None
    cache: Cache | None = None
    memo: dict[Any, tuple[Choice, Callable]] = field(default_factory=dict)
    last: Choice | None = None


def choose(
    selector: Selector,
    key: Key,
    problem: ConvProblem,
    candidates: Callable[[], tuple[dict[str, Candidate], dict[str, str]]],
    runner: Callable[[], Runner],
    block: Callable | None = None,
    tf32: bool = False,
    compiled: bool = False,
) -> tuple[Choice, Callable]:
    """The decision for ``key`` (see the module docstring for the order) and its function.

    ``compiled``: the framework compiles each candidate (JAX, TensorFlow graphs); then a
    strategy tagged ``unrolled`` (one convolution per channel in the graph: ``split``) is left
    out of the autotune above :data:`UNROLL_LIMIT` channels (its compilation alone took 40 to 110 s at
    C=100..128 on 2 cores, docs/layers.md); pinning it still works."""
    offered, refused = candidates()
    if not offered:
        raise LayerError(
            f"no {key.framework} strategy can compute {problem} in {key.mode} mode: "
            + "; ".join(f"{n}: {why}" for n, why in refused.items())
        )
    choice: Choice | None = None
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    if selector.strategy != "auto":
        if selector.strategy not in offered:
            why = refused.get(selector.strategy, "not a strategy of this framework")
            raise LayerError(
                f"strategy {selector.strategy!r} cannot compute {problem} ({key.mode}): {why}; "
                "use strategy='auto' or one of: " + ", ".join(offered)
            )
        choice = Choice(selector.strategy, "pinned", key, "strategy given by the user", created=now)
    elif not autotune_enabled():
        name = FALLBACK if FALLBACK in offered else next(iter(offered))
        choice = Choice(name, "fallback", key, f"{AUTOTUNE_ENV}=0: autotuning is off", created=now)
    else:
        cache = selector.cache if selector.cache is not None else Cache()
        cached = cache.get(key)
        if cached is not None and cached.strategy in offered:
            choice = cached
            choice.source = "cache"
        if choice is None:
            folders = results_folders(selector.results)
            if folders:
                choice = from_results(key, problem, list(offered), folders)
        if choice is None:
            # a compiled framework's graph holds one op per channel for an "unrolled" strategy:
            # above UNROLL_LIMIT channels compiling it costs more than tuning is worth
            too_long = {
                n
                for n, c in offered.items()
                if compiled and problem.C > UNROLL_LIMIT and "unrolled" in c.strategy.tags
            }
            tried = {n: c for n, c in offered.items() if n not in too_long} or offered
            note = f"not tried: unrolls {problem.C} convolutions, compiling them takes long; pin it to use it"
            skipped = [Trial(n, note=note) for n in too_long if n not in tried]
            choice = autotune(
                key,
                problem,
                tried,
                runner(),
                tune_budget(selector.budget),
                block=block,
                tf32=tf32,
            )
            choice.trials += skipped
        if choice.source in ("autotune", "results"):
            cache.put(choice)
        for problem_text in cache.problems:  # a damaged or unwritable cache: said, never fatal
            warnings.warn(f"sharedconv layers: {problem_text}", RuntimeWarning, stacklevel=4)
        cache.problems.clear()
    selector.last = choice
    return choice, offered[choice.strategy].fn
