"""The JAX backend: every strategy under ``jax.jit``, compiled ahead of time in ``prepare``.

``jax`` is imported inside the functions that need it. float64 needs ``jax_enable_x64``,
which :meth:`JaxBackend.configure` sets in the worker before any array exists.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import dist_version, missing_module, refuse_low_precision_fft, tap_slices
from .contract import Backend, Strategy, StrategyTable
from .layouts import from_canonical
from .problem import ConvProblem

HINT = "pip install 'sharedconv[jax]'"


def _low_precision_training(problem: ConvProblem, device: str, mode: str) -> str | None:
    if mode == "train" and device == "cpu" and problem.dtype in ("float16", "bfloat16"):
        return (
            f"XLA:CPU sums the dw/db reductions in {problem.dtype} itself (bias-gradient error about "
            f"{'9e-3' if problem.dtype == 'float16' else '4e-2'} of max, above the bound); train in float32"
        )
    return None


class Kit:
    """What every builder needs of one problem, made once per prepared call."""

    def __init__(self, jax: Any, problem: ConvProblem, precision: Any):
        self.jax, self.jnp, self.lax = jax, jax.numpy, jax.lax
        self.problem, self.precision = problem, precision
        self.B, self.C, self.H, self.W = problem.x_shape
        self.N, self.KH, self.KW = problem.w_shape
        self.ho, self.wo = problem.out_hw
        self.pads = [tuple(p) for p in problem.pads]

    def conv(
        self, x4: Any, w: Any, b: Any, dn: tuple[str, str, str] = ("NCHW", "OIHW", "NCHW")
    ) -> Any:
        """The one-channel conv: (n, 1, H, W) -> (n, N, H', W'), or NHWC with ``dn``."""
        jnp = self.jnp
        kernel = w[:, None] if dn[1] == "OIHW" else jnp.transpose(w, (1, 2, 0))[:, :, None, :]
        y = self.lax.conv_general_dilated(
            x4,
            kernel,
            window_strides=self.problem.stride,
            padding=self.pads,
            rhs_dilation=self.problem.dilation,
            dimension_numbers=dn,
            precision=self.precision,
        )
        if b is not None:
            y = y + (b[:, None, None] if dn[2] == "NCHW" else b)
        return y


# Each strategy: its descriptor and its builder ``f(kit, x, w, b) -> y`` on JAX arrays in the
# declared layouts, declared together; every one runs under jax.jit.
TABLE = StrategyTable()


@TABLE.strategy(
    "fold",
    "channels folded into the batch: conv_general_dilated on (B*C, 1, H, W), NCHW dimension numbers",
    timed="reshape, conv (NCHW), reshape: one compiled XLA executable",
    supports_fn=_low_precision_training,
    tags=("conv",),
)
def fold(k: Kit, x: Any, w: Any, b: Any) -> Any:
    return k.conv(x.reshape(k.B * k.C, 1, k.H, k.W), w, b).reshape(k.B, k.C, k.N, k.ho, k.wo)


@TABLE.strategy(
    "fold_nhwc",
    "channels folded into the batch with NHWC dimension numbers: (B*C, H, W, 1) -> (B*C, H', W', N)",
    output_layout="BCHWN",
    timed="reshape, conv (NHWC), reshape: one compiled XLA executable",
    supports_fn=_low_precision_training,
    tags=("conv",),
)
def fold_nhwc(k: Kit, x: Any, w: Any, b: Any) -> Any:
    y = k.conv(x.reshape(k.B * k.C, k.H, k.W, 1), w, b, ("NHWC", "HWIO", "NHWC"))
    return y.reshape(k.B, k.C, k.ho, k.wo, k.N)


@TABLE.strategy(
    "conv3d",
    "a 3-D conv_general_dilated on (B, 1, C, H, W) with a (1, KH, KW) window",
    output_layout="BNCHW",
    seed_option=1,
    timed="expand dims, 3-D conv: one compiled XLA executable",
    supports_fn=_low_precision_training,
    tags=("conv",),
)
def conv3d(k: Kit, x: Any, w: Any, b: Any) -> Any:
    y = k.lax.conv_general_dilated(
        x[:, None],
        w[:, None, None],
        window_strides=(1, *k.problem.stride),
        padding=[(0, 0), *k.pads],
        rhs_dilation=(1, *k.problem.dilation),
        dimension_numbers=("NCDHW", "OIDHW", "NCDHW"),
        precision=k.precision,
    )
    return y + b[:, None, None, None] if b is not None else y


@TABLE.strategy(
    "vmap",
    "jax.vmap of the one-channel conv over the channel axis (TimeDistributed)",
    seed_option=2,
    timed="vmap over C of a one-channel conv: one compiled XLA executable",
    supports_fn=_low_precision_training,
    tags=("conv", "map"),
)
def vmap(k: Kit, x: Any, w: Any, b: Any) -> Any:
    return k.jax.vmap(lambda xc: k.conv(xc[:, None], w, b), in_axes=1, out_axes=1)(x)


@TABLE.strategy(
    "lax_map",
    "lax.map over channels: one channel at a time (sequential, lower memory)",
    input_layout="CBHW",
    output_layout="CBNHW",
    timed="a compiled loop over C of a one-channel conv",
    supports_fn=_low_precision_training,
    tags=("conv", "map"),
)
def lax_map(k: Kit, x: Any, w: Any, b: Any) -> Any:  # x is (C, B, H, W)
    return k.lax.map(lambda xc: k.conv(xc[:, None], w, b), x)


@TABLE.strategy(
    "split",
    "a Python loop of one shared conv per channel inside jit, stacked",
    seed_option=3,
    timed="C convs and a stack in one compiled XLA executable",
    supports_fn=_low_precision_training,
    tags=("conv", "map", "unrolled"),
)
def split(k: Kit, x: Any, w: Any, b: Any) -> Any:
    return k.jnp.stack([k.conv(x[:, c : c + 1], w, b) for c in range(k.C)], axis=1)


@TABLE.strategy(
    "grouped",
    "feature_group_count=C with the filters tiled C times (depthwise, multiplier N)",
    timed="tile filters, grouped conv, reshape: one compiled XLA executable",
    supports_fn=_low_precision_training,
    tags=("conv",),
)
def grouped(k: Kit, x: Any, w: Any, b: Any) -> Any:
    jnp = k.jnp
    y = k.lax.conv_general_dilated(
        x,
        jnp.tile(w[:, None], (k.C, 1, 1, 1)),
        window_strides=k.problem.stride,
        padding=k.pads,
        rhs_dilation=k.problem.dilation,
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        feature_group_count=k.C,
        precision=k.precision,
    )
    if b is not None:
        y = y + jnp.tile(b, k.C)[:, None, None]
    return y.reshape(k.B, k.C, k.N, k.ho, k.wo)


@TABLE.strategy(
    "patches_einsum",
    "lax.conv_general_dilated_patches then an einsum with the filters (precision HIGHEST)",
    timed="patch extraction (K*K copies), einsum: one compiled XLA executable",
    supports_fn=_low_precision_training,
    tags=("patches",),
)
def patches_einsum(k: Kit, x: Any, w: Any, b: Any) -> Any:
    cols = k.lax.conv_general_dilated_patches(
        x.reshape(k.B * k.C, 1, k.H, k.W),
        filter_shape=(k.KH, k.KW),
        window_strides=k.problem.stride,
        padding=k.pads,
        rhs_dilation=k.problem.dilation,
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=k.precision,
    )  # (B*C, KH*KW, H', W')
    y = k.jnp.einsum("ikhw,nk->inhw", cols, w.reshape(k.N, k.KH * k.KW), precision=k.precision)
    if b is not None:
        y = y + b[:, None, None]
    return y.reshape(k.B, k.C, k.N, k.ho, k.wo)


def _no_fft_low_precision(problem: ConvProblem, device: str, mode: str) -> str | None:
    return refuse_low_precision_fft(problem, "jnp.fft") or _low_precision_training(
        problem, device, mode
    )


@TABLE.strategy(
    "fft",
    "cross-correlation through jnp.fft.rfft2 / irfft2 (padding honoured, stride by subsampling)",
    timed="pad, rfft2 of input and dilated filters, product, irfft2, crop: one compiled XLA executable",
    supports_fn=_no_fft_low_precision,
    tags=("fft",),
)
def fft(k: Kit, x: Any, w: Any, b: Any) -> Any:
    jnp, N, KH, KW = k.jnp, k.N, k.KH, k.KW
    xp = jnp.pad(x, [(0, 0), (0, 0), *k.pads])
    hp, wp = xp.shape[-2:]
    dh, dw = k.problem.dilation
    wd = jnp.zeros((N, dh * (KH - 1) + 1, dw * (KW - 1) + 1), x.dtype).at[:, ::dh, ::dw].set(w)
    xf = jnp.fft.rfft2(xp, s=(hp, wp))
    wf = jnp.fft.rfft2(wd, s=(hp, wp))
    full = jnp.fft.irfft2(xf[:, :, None] * jnp.conj(wf), s=(hp, wp)).astype(x.dtype)
    sh, sw = k.problem.stride
    y = full[..., : (k.ho - 1) * sh + 1 : sh, : (k.wo - 1) * sw + 1 : sw]
    return y + b[:, None, None] if b is not None else y


@TABLE.strategy(
    "shift_add",
    "the sum of KH*KW shifted input slices times the filter taps",
    timed="pad and KH*KW multiply-adds, fused by XLA: one compiled XLA executable",
    supports_fn=_low_precision_training,
    tags=("elementwise",),
)
def shift_add(k: Kit, x: Any, w: Any, b: Any) -> Any:
    jnp = k.jnp
    shape = (k.B, k.C, k.N, k.ho, k.wo)
    xp = jnp.pad(x, [(0, 0), (0, 0), *k.pads])[:, :, None]
    y = jnp.zeros(shape, x.dtype) if b is None else jnp.broadcast_to(b[:, None, None], shape)
    for p in range(k.KH):
        for q in range(k.KW):
            rows, cols = tap_slices(k.problem, p, q)
            y = y + xp[..., rows, cols] * w[:, p, q][:, None, None]
    return y


STRATEGIES = TABLE.strategies


def _builders(jax: Any, problem: ConvProblem, precision: Any) -> dict[str, Callable]:
    """Each strategy's builder as ``f(x, w, b) -> y`` for this problem (the drop-in layers
    wrap them in layout permutations)."""
    return TABLE.bind_all(Kit(jax, problem, precision))


def train_step(jax: Any, fn: Callable) -> Callable:
    """``fn(x, w, b)`` as one training step: ``(y, dx, dw[, db])`` for the output gradient
    ``dy`` (the harness's train mode; the drop-in layers tune with it too)."""

    def step(x: Any, w: Any, b: Any, dy: Any) -> tuple[Any, ...]:
        if b is None:
            y, pullback = jax.vjp(lambda x, w: fn(x, w, None), x, w)
        else:
            y, pullback = jax.vjp(fn, x, w, b)
        return (y, *pullback(dy))

    return step


class JaxBackend(Backend):
    name = "jax"
    install_hint = HINT
    devices = ("cpu", "cuda")
    strategies = STRATEGIES

    def available(self) -> str | None:
        return missing_module("jax", HINT)

    def versions(self) -> dict[str, str]:
        return dist_version("jax", "jaxlib")

    def configure(self, threads: int, device: str) -> dict[str, Any]:
        os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        if threads == 1:
            flags = os.environ.get("XLA_FLAGS", "")
            os.environ["XLA_FLAGS"] = (
                f"{flags} --xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1".strip()
            )
        import jax

        jax.config.update("jax_enable_x64", True)
        tf32 = self.tf32
        facts: dict[str, Any] = {
            "x64": True,
            "precision": "default (TF32 allowed)" if tf32 else "HIGHEST",
            "threads_enforced_by": "CPU affinity (XLA's CPU client has no thread-count setting)",
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
        }
        if device == "cuda":
            facts["gpu"] = str(jax.devices("gpu")[0].device_kind)
            facts["tf32"] = tf32
        return facts

    def prepare(
        self,
        problem: ConvProblem,
        arrays: dict[str, np.ndarray],
        strategy: Strategy,
        device: str,
        mode: str,
    ) -> Callable[[], tuple[Any, ...]]:
        import jax
        import jax.numpy as jnp

        dev = jax.devices("gpu" if device == "cuda" else "cpu")[0]
        dtype = jnp.dtype(problem.dtype)
        tf32 = self.tf32
        precision = jax.lax.Precision.DEFAULT if tf32 else jax.lax.Precision.HIGHEST
        fn = TABLE.bind(strategy, Kit(jax, problem, precision))

        def put(a: np.ndarray) -> Any:
            return jax.device_put(jnp.asarray(np.ascontiguousarray(a), dtype=dtype), dev)

        x = put(from_canonical(arrays["x"], strategy.input_layout))
        w = put(arrays["w"])
        b = put(arrays["b"]) if problem.bias else None

        if mode != "train":
            compiled = jax.jit(fn).lower(x, w, b).compile()

            def call() -> tuple[Any, ...]:
                return (compiled(x, w, b),)

            call.compiled = compiled  # type: ignore[attr-defined]  # for device_memory
            return call

        dy = put(from_canonical(arrays["dy"], strategy.output_layout))

        compiled = jax.jit(train_step(jax, fn)).lower(x, w, b, dy).compile()

        def train_call() -> tuple[Any, ...]:
            return compiled(x, w, b, dy)

        train_call.compiled = compiled  # type: ignore[attr-defined]  # for device_memory
        return train_call

    def device_memory(self, call: Callable[[], tuple[Any, ...]]) -> dict[str, Any] | None:
        import jax

        dev = jax.devices()[0]
        if dev.platform == "cpu":
            return xla_plan(getattr(call, "compiled", None))

        def run() -> None:
            jax.block_until_ready(call())

        return device_peak(dev.memory_stats, run, getattr(call, "compiled", None))

    def synchronize(self, outputs: tuple[Any, ...]) -> None:
        import jax

        jax.block_until_ready(outputs)

    def to_numpy(self, outputs: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
        out = []
        for o in outputs:
            a = np.asarray(o)
            if a.dtype.name == "bfloat16":
                a = a.astype(np.float32)
            out.append(a)
        return tuple(out)


def device_peak(
    memory_stats: Callable[[], dict | None], run: Callable[[], None], compiled: Any = None
) -> dict[str, Any] | None:
    """One call's device memory above what was in use before it.

    JAX keeps a process-wide ``peak_bytes_in_use`` that cannot be reset. When the call raises
    it, peak minus bytes-in-use-before is this call's own peak. When it does not (an earlier
    case peaked higher), the counter says nothing about this call, so XLA's memory plan of the
    compiled call answers instead: its temporary and output buffers (the inputs were already
    resident). Only when neither is available is the old peak reported, marked as an upper bound.
    """
    stats = memory_stats() or {}
    before = stats.get("bytes_in_use", 0)
    old_peak = stats.get("peak_bytes_in_use")
    run()
    peak = (memory_stats() or {}).get("peak_bytes_in_use")
    if peak is None:
        return None
    if old_peak is None or peak > old_peak:
        return {
            "peak_bytes": max(0, peak - before),
            "method": "JAX memory_stats: the call raised the process's peak_bytes_in_use; that peak minus bytes in use before",
        }
    plan = xla_plan(compiled)
    if plan is not None:
        plan["method"] += (
            " (the call stayed under an earlier case's process peak, which JAX cannot reset)"
        )
        return plan
    return {
        "peak_bytes": max(0, peak - before),
        "method": "JAX memory_stats: process peak_bytes_in_use minus bytes in use before; an upper bound "
        "(an earlier case's peak, which JAX cannot reset, may be higher than this call's)",
    }


def xla_plan(compiled: Any) -> dict[str, Any] | None:
    """XLA's memory plan of a compiled call: what it allocates beyond its arguments.

    Temporaries plus outputs, less the outputs that alias an argument's buffer. A plan, not a
    measurement: the buffer assignment XLA made at compile time, exact for the buffers it
    manages, blind to what a custom call (oneDNN, Eigen) allocates inside itself."""
    try:
        plan = compiled.memory_analysis() if compiled is not None else None
    except Exception:  # noqa: BLE001 - a backend without memory analysis
        return None
    if plan is None:
        return None
    planned = plan.temp_size_in_bytes + plan.output_size_in_bytes - plan.alias_size_in_bytes
    return {
        "peak_bytes": max(0, int(planned)),
        "method": "XLA's memory plan of the compiled call: temporary + output buffers, less aliased ones",
    }
