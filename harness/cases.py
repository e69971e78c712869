"""One case inside a worker: prepare, first call, verify against the oracle, then time.

Everything crosses the process boundary as plain data: the request names the backend,
strategy, problem (as a dict), mode, device, seed and the folder of the oracle's arrays;
the answer is a JSON-able record.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
from sharedconv.backends.agreement import compare_outputs as compare
from sharedconv.backends.contract import Backend, canonical_outputs, output_names
from sharedconv.backends.problem import ConvProblem, input_fingerprint, make_inputs

_INPUT_CACHE: dict[tuple, dict[str, np.ndarray]] = {}


def cached_inputs(problem: ConvProblem, seed: int, mode: str) -> dict[str, np.ndarray]:
    """The seeded inputs, kept for the next strategy on the same problem (one entry)."""
    key = (problem, seed, mode)
    if key not in _INPUT_CACHE:
        _INPUT_CACHE.clear()
        _INPUT_CACHE[key] = make_inputs(problem, seed, mode)
    return _INPUT_CACHE[key]


def load_reference(
    folder: str, mode: str, problem: ConvProblem
) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The oracle's outputs and, for a sampled oracle, the flat indices of its images."""
    names = output_names(problem, mode)
    refs = {n: np.load(Path(folder) / f"{n}.npy", mmap_mode="r", allow_pickle=False) for n in names}
    sample_file = Path(folder) / "sample_images.npy"
    sample = np.load(sample_file, allow_pickle=False) if sample_file.exists() else None
    return refs, sample


def select_images(
    problem: ConvProblem, got: dict[str, np.ndarray], sample: np.ndarray
) -> dict[str, np.ndarray]:
    """The sampled images of y and dx (canonical layouts); dw and db untouched."""
    B, C = problem.B, problem.C
    out = dict(got)
    if "y" in got and got["y"].shape == problem.y_shape:
        out["y"] = got["y"].reshape(B * C, *problem.y_shape[2:])[sample]
    if "dx" in got and got["dx"].shape == problem.x_shape:
        out["dx"] = got["dx"].reshape(B * C, problem.H, problem.W)[sample]
    return out


def execute_case(
    backend: Backend,
    request: dict[str, Any],
    context: dict[str, Any],
    held: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One case: prepare, first call, verify, then memory and timing. With ``request["hold"]``
    (an id) and ``held``, a timed case's prepared call is kept there under that id for the
    parent's interleaved turns (``op: turn``)."""
    problem = ConvProblem.from_dict(request["problem"])
    mode = request["mode"]
    device = request.get("device", context.get("device", "cpu"))
    strategy = backend.strategy(request["strategy"])
    record: dict[str, Any] = {"timed_region": strategy.timed}
    reason = backend.supports(problem, strategy, device, mode)
    if reason:
        return {**record, "status": "skipped", "reason": reason}

    arrays = cached_inputs(problem, int(request.get("seed", 0)), mode)
    t0 = time.perf_counter()
    fn = backend.prepare(problem, arrays, strategy, device, mode)
    t1 = time.perf_counter()
    cold = None
    if device == "cpu" and request.get("timing"):
        # the cold probe: memory of the first call, before this case's call filled any pool
        from .timing import first_call_memory

        outputs, first_s, cold = first_call_memory(fn, backend.synchronize)
    else:
        outputs = fn()
        backend.synchronize(outputs)
        first_s = time.perf_counter() - t1
    record["setup_s"] = t1 - t0
    record["first_call_s"] = first_s

    if request.get("oracle"):
        with one_blas_thread():
            record.update(
                _verify(request, problem, mode, strategy, backend, outputs, arrays, context)
            )
    else:
        record["status"] = "unverified"
    del outputs
    timing = request.get("timing")
    if timing and (record["status"] == "pass" or timing.get("time_anyway")):
        from .memory import output_bytes
        from .timing import measure

        record.update(measure(backend, fn, timing, device, output_bytes(problem, mode), cold))
        record["timed"] = True
        if request.get("hold") and held is not None:
            held[request["hold"]] = (fn, backend.synchronize)
            record["held"] = True
    return record


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """The harness's own NumPy arithmetic in a worker (verification: norms, BLAS dot products)
    on one BLAS thread: OpenBLAS's threads keep spinning after a call on its pool, on the cores
    the timed calls right after it need. `scripts/blas_spin.py` (native kernel,
    B=4,C=1,H=64,W=64,N=16,K=5, 2 threads, windows of 20 calls): 3 of 24 windows right after
    a 2-thread BLAS call had medians of 3.8-3.9 ms, 20 times the usual 0.12-0.22 ms; none of
    24 windows after a pause did."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - a dependency; the limits are only a courtesy
        yield
        return
    with threadpool_limits(limits=1, user_api="blas"):
        yield


def _verify(
    request: dict[str, Any],
    problem: ConvProblem,
    mode: str,
    strategy: Any,
    backend: Backend,
    outputs: Any,
    arrays: dict[str, np.ndarray],
    context: dict[str, Any],
) -> dict[str, Any]:
    """The first call's outputs against the oracle: the verdict and the status."""
    record: dict[str, Any] = {}
    got = canonical_outputs(strategy, problem, mode, backend.to_numpy(outputs))
    if request.get("digest"):
        # equal digests mean bit-identical outputs (the seed experiment's assertion)
        record["output_digest"] = hashlib.sha256(
            np.ascontiguousarray(got["y"]).tobytes()
        ).hexdigest()[:32]
    expected = (Path(request["oracle"]) / "fingerprint.txt").read_text().strip()
    if input_fingerprint({k: v for k, v in arrays.items() if k != "dy"}) != expected:
        raise RuntimeError(
            "this worker's seeded inputs differ from the oracle's: was sharedconv changed during the run? Start it again"
        )
    reference, sample = load_reference(request["oracle"], mode, problem)
    if sample is not None:
        got = select_images(problem, got, sample)
        record["verified_on"] = (
            f"a seeded sample of {len(sample)} of {problem.B * problem.C} images (dw, db in full)"
        )
    verdict = compare(problem, got, reference, tf32=bool(context.get("tf32")))
    del got, reference
    record["verify"] = verdict
    record["status"] = "pass" if not verdict["failures"] else "mismatch"
    if verdict["failures"]:
        record["reason"] = "; ".join(verdict["failures"])
    return record
