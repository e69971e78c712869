"""The TensorFlow backend: nine strategies, each as a graph ``tf.function`` and under XLA.

TensorFlow's native layout is NHWC, so every strategy takes its input as ``(B, H, W, C)``;
a strategy that needs another order transposes inside its call, where the timer sees it.
Tracing (and XLA compilation, on the first call) happen in preparation, with fixed input
signatures, so nothing retraces inside the timed region.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ._common import dist_version, missing_module, refuse_low_precision_fft, tap_slices
from .contract import Backend, Strategy, StrategyTable, SupportsFn, supports_everything
from .layouts import from_canonical
from .problem import ConvProblem

HINT = "pip install 'sharedconv[tensorflow]'"


# Measured on CPU (sharedconv verify --suite conformance): TensorFlow's graph-mode gradient
# kernels accumulate dw/db in float16/bfloat16 (errors up to 3e-2, above the bounds) and have no
# dilated Conv2DBackpropInput; XLA accumulates in float32 and handles dilation.
_GRAPH_LOW_PRECISION_TRAIN = {
    "fold",
    "conv3d",
    "grouped",
    "map_fn",
    "vectorized_map",
    "split",
    "shift_add",
}
_GRAPH_NO_DILATED_BACKPROP = {"fold", "map_fn", "vectorized_map", "split"}
# Found by the conformance kit's random problems (stride 1x2): TensorFlow's CPU
# DepthwiseConv2dNative "only supports equal length strides in the row and column dimensions";
# XLA's grouped convolution takes any.
_GRAPH_EQUAL_STRIDES = {"grouped"}


def _graph_supports(name: str, supports_fn: SupportsFn) -> SupportsFn:
    def supports(problem: ConvProblem, device: str, mode: str) -> str | None:
        if mode == "train" and device == "cpu":
            if name in _GRAPH_LOW_PRECISION_TRAIN and problem.dtype in ("float16", "bfloat16"):
                return (
                    f"TensorFlow's CPU graph kernels sum the dw/db gradients in {problem.dtype} "
                    f"(error above the bound); use {name}_xla or float32"
                )
            if name in _GRAPH_NO_DILATED_BACKPROP and max(problem.dilation) > 1:
                return f"TensorFlow's CPU Conv2DBackpropInput does not support dilation > 1; use {name}_xla"
        if (
            device == "cpu"
            and name in _GRAPH_EQUAL_STRIDES
            and problem.stride[0] != problem.stride[1]
        ):
            return (
                "TensorFlow's CPU depthwise convolution takes equal row and column strides only, "
                f"not {problem.stride[0]}x{problem.stride[1]}; use {name}_xla"
            )
        return supports_fn(problem, device, mode)

    return supports


class Kit:
    """What every builder needs of one problem. Reshapes leave the batch to TensorFlow (-1):
    the Keras layer runs these inside Keras' training graph, whose batch size is unknown while
    it is traced."""

    def __init__(self, tf: Any, problem: ConvProblem):
        self.tf, self.problem = tf, problem
        _, self.C, self.H, self.W = problem.x_shape
        self.N, self.KH, self.KW = problem.w_shape
        self.ho, self.wo = problem.out_hw
        (self.pt, self.pb), (self.pl, self.pr) = problem.pads
        self.sh, self.sw = problem.stride
        self.dh, self.dw = problem.dilation
        self.explicit = [[0, 0], [self.pt, self.pb], [self.pl, self.pr], [0, 0]]
        self.same = problem.padding == "same"

    def hwio(self, w: Any) -> Any:  # (N, KH, KW) -> [KH, KW, 1, N]
        return self.tf.transpose(w, (1, 2, 0))[:, :, None, :]

    def conv1(self, x4: Any, w: Any, b: Any) -> Any:  # x4 (n, H, W, 1) -> (n, H', W', N)
        y = self.tf.nn.conv2d(
            x4,
            self.hwio(w),
            strides=[1, self.sh, self.sw, 1],
            padding=self.explicit,
            dilations=[1, self.dh, self.dw, 1],
        )
        return y + b if b is not None else y

    def channels_first(self, x: Any) -> Any:  # (B, H, W, C) -> (C, B, H, W, 1)
        return self.tf.transpose(x, (3, 0, 1, 2))[..., None]


TABLE = StrategyTable()


def _strategy(
    name: str,
    description: str,
    *,
    timed: str,
    supports_fn: SupportsFn = supports_everything,
    tags: tuple[str, ...],
    formerly: tuple[str, ...] = (),
    **fields: Any,
) -> Callable[[Callable], Callable]:
    """Declare a strategy in both its forms: a graph ``tf.function`` (``name``) and the same
    builder under XLA (``name_xla``, a variant). Every strategy takes NHWC input."""

    def register(build: Callable) -> Callable:
        TABLE.strategy(
            name,
            description + " (tf.function graph)",
            input_layout="BHWC",
            timed="tf.function graph: " + timed,
            supports_fn=_graph_supports(name, supports_fn),
            tags=(*tags, "graph"),
            formerly=formerly,
            **fields,
        )(build)
        TABLE.variant(
            name,
            form="xla",
            name=name + "_xla",
            description=description + " (tf.function with jit_compile=True: XLA)",
            timed="XLA-compiled: " + timed,
            supports_fn=supports_fn,
            tags=(*tags, "xla", "compiled"),
        )
        return build

    return register


@_strategy(
    "fold",
    "channels folded into the batch: tf.nn.conv2d on (B*C, H, W, 1)",
    output_layout="BCHWN",
    timed="transpose NHWC->NCHW, reshape, conv2d, reshape",
    tags=("conv",),
)
def fold(k: Kit, x: Any, w: Any, b: Any) -> Any:
    tf = k.tf
    xc = tf.reshape(tf.transpose(x, (0, 3, 1, 2)), (-1, k.H, k.W, 1))
    return tf.reshape(k.conv1(xc, w, b), (-1, k.C, k.ho, k.wo, k.N))


def _conv3d_supports(problem: ConvProblem, device: str, mode: str) -> str | None:
    if device == "cpu" and max(problem.dilation) > 1:
        return "tf.nn.conv3d has no dilation on CPU (its CPU kernel accepts dilation 1 only)"
    if device == "cpu" and problem.dtype == "bfloat16" and mode == "train":
        return "tf.nn.conv3d has no bfloat16 gradient kernels on CPU"
    return None


@_strategy(
    "conv3d",
    "tf.nn.conv3d on (B, C, H, W, 1) with a [1, KH, KW, 1, N] filter",
    output_layout="BCHWN",
    seed_option=1,
    timed="transpose NHWC->NCHW, expand dims, conv3d",
    supports_fn=_conv3d_supports,
    tags=("conv",),
)
def conv3d(k: Kit, x: Any, w: Any, b: Any) -> Any:
    tf = k.tf
    x5 = tf.transpose(x, (0, 3, 1, 2))[..., None]  # (B, C, H, W, 1): "depth" is the channel
    if not k.same:
        x5 = tf.pad(x5, [[0, 0], [0, 0], [k.pt, k.pb], [k.pl, k.pr], [0, 0]])
    y = tf.nn.conv3d(
        x5,
        tf.transpose(w, (1, 2, 0))[None, :, :, None, :],
        strides=[1, 1, k.sh, k.sw, 1],
        padding="SAME" if k.same else "VALID",
        dilations=[1, 1, k.dh, k.dw, 1],
    )
    return y + b if b is not None else y


def _depthwise_supports(problem: ConvProblem, device: str, mode: str) -> str | None:
    if max(problem.stride) > 1 and max(problem.dilation) > 1:
        return "tf.nn.depthwise_conv2d does not support dilation together with stride > 1"
    return None


@_strategy(
    "grouped",
    "tf.nn.depthwise_conv2d with the filters tiled C times (channel multiplier N)",
    output_layout="BHWCN",
    timed="tile filters, depthwise_conv2d on NHWC, reshape (free)",
    supports_fn=_depthwise_supports,
    tags=("conv",),
    formerly=("depthwise",),  # the name PyTorch and JAX give the same idea
)
def grouped(k: Kit, x: Any, w: Any, b: Any) -> Any:
    tf = k.tf
    kernel = tf.tile(tf.transpose(w, (1, 2, 0))[:, :, None, :], (1, 1, k.C, 1))  # [KH,KW,C,N]
    y = tf.nn.depthwise_conv2d(
        x, kernel, strides=[1, k.sh, k.sw, 1], padding=k.explicit, dilations=[k.dh, k.dw]
    )  # (B, H', W', C*N), channel c owns outputs c*N .. c*N+N-1
    y = tf.reshape(y, (-1, k.ho, k.wo, k.C, k.N))
    return y + b if b is not None else y


@_strategy(
    "map_fn",
    "tf.map_fn of a one-channel conv2d over the channels (TimeDistributed in TF form)",
    output_layout="CBHWN",
    seed_option=2,
    timed="transpose to channels-first, map_fn of conv2d over C",
    tags=("conv", "map"),
)
def map_fn(k: Kit, x: Any, w: Any, b: Any) -> Any:
    return k.tf.map_fn(lambda xc: k.conv1(xc, w, b), k.channels_first(x))


@_strategy(
    "vectorized_map",
    "tf.vectorized_map of the one-channel conv2d over the channels",
    output_layout="CBHWN",
    timed="transpose to channels-first, vectorized_map (pfor) of conv2d over C",
    tags=("conv", "map"),
)
def vectorized_map(k: Kit, x: Any, w: Any, b: Any) -> Any:
    return k.tf.vectorized_map(lambda xc: k.conv1(xc, w, b), k.channels_first(x))


@_strategy(
    "split",
    "tf.unstack the channels, one shared conv2d per channel, tf.stack",
    output_layout="BHWCN",
    seed_option=3,
    timed="unstack, C conv2d calls, stack",
    tags=("conv", "map", "unrolled"),
)
def split(k: Kit, x: Any, w: Any, b: Any) -> Any:
    tf = k.tf
    return tf.stack([k.conv1(xc[..., None], w, b) for xc in tf.unstack(x, axis=3)], axis=3)


def _patches_supports(problem: ConvProblem, device: str, mode: str) -> str | None:
    if mode == "train" and problem.dtype in ("float16", "bfloat16"):
        return f"the gradient of tf.image.extract_patches has no {problem.dtype} kernel"
    return None


@_strategy(
    "patches_einsum",
    "tf.image.extract_patches on NHWC then tf.einsum with the filters",
    output_layout="BHWCN",
    timed="pad when explicit, extract_patches (K*K copies), einsum",
    supports_fn=_patches_supports,
    tags=("patches",),
)
def patches_einsum(k: Kit, x: Any, w: Any, b: Any) -> Any:
    tf = k.tf
    xp = x if k.same else tf.pad(x, k.explicit)
    patches = tf.image.extract_patches(
        xp,
        sizes=[1, k.KH, k.KW, 1],
        strides=[1, k.sh, k.sw, 1],
        rates=[1, k.dh, k.dw, 1],
        padding="SAME" if k.same else "VALID",
    )  # (B, H', W', KH*KW*C), ordered (KH, KW, C)
    patches = tf.reshape(patches, (-1, k.ho, k.wo, k.KH * k.KW, k.C))
    y = tf.einsum("bhwkc,nk->bhwcn", patches, tf.reshape(w, (k.N, k.KH * k.KW)))
    return y + b if b is not None else y


def _fft_supports(problem: ConvProblem, device: str, mode: str) -> str | None:
    return refuse_low_precision_fft(problem, "tf.signal.rfft2d")


@_strategy(
    "fft",
    "cross-correlation through tf.signal.rfft2d / irfft2d",
    timed="transpose NHWC->NCHW, pad, rfft2d of input and dilated filters, product, irfft2d, crop",
    supports_fn=_fft_supports,
    tags=("fft",),
)
def fft(k: Kit, x: Any, w: Any, b: Any) -> Any:
    tf, N, KH, KW, dh, dw = k.tf, k.N, k.KH, k.KW, k.dh, k.dw
    xp = tf.pad(tf.transpose(x, (0, 3, 1, 2)), [[0, 0], [0, 0], [k.pt, k.pb], [k.pl, k.pr]])
    hp, wp = k.H + k.pt + k.pb, k.W + k.pl + k.pr
    # dilate the filters by scattering taps into a zero kernel, then pad to the input size
    wd = tf.reshape(
        tf.pad(w[:, :, None, :, None], [[0, 0], [0, 0], [0, dh - 1], [0, 0], [0, dw - 1]]),
        (N, KH * dh, KW * dw),
    )[:, : dh * (KH - 1) + 1, : dw * (KW - 1) + 1]
    wd = tf.pad(wd, [[0, 0], [0, hp - wd.shape[1]], [0, wp - wd.shape[2]]])
    xf = tf.signal.rfft2d(xp)
    wf = tf.signal.rfft2d(wd)
    full = tf.signal.irfft2d(xf[:, :, None] * tf.math.conj(wf), fft_length=[hp, wp])
    y = full[..., : (k.ho - 1) * k.sh + 1 : k.sh, : (k.wo - 1) * k.sw + 1 : k.sw]
    return y + b[:, None, None] if b is not None else y


@_strategy(
    "shift_add",
    "the sum of KH*KW shifted slices of the NHWC input times the filter taps",
    output_layout="BHWCN",
    timed="pad, KH*KW multiply-adds",
    tags=("elementwise",),
)
def shift_add(k: Kit, x: Any, w: Any, b: Any) -> Any:
    xp = k.tf.pad(x, k.explicit)[..., None]  # (B, Hp, Wp, C, 1)
    y = None
    for p in range(k.KH):
        for q in range(k.KW):
            rows, cols = tap_slices(k.problem, p, q)
            term = xp[:, rows, cols] * w[:, p, q]
            y = term if y is None else y + term
    return y + b if b is not None else y


STRATEGIES = TABLE.strategies


def _builders(tf: Any, problem: ConvProblem) -> dict[str, Callable]:
    """Each strategy's builder as ``f(x, w, b) -> y`` for this problem (the drop-in layers
    wrap them in layout permutations)."""
    return TABLE.bind_all(Kit(tf, problem))


class TensorflowBackend(Backend):
    name = "tensorflow"
    install_hint = HINT
    devices = ("cpu", "cuda")
    strategies = STRATEGIES

    def available(self) -> str | None:
        return missing_module("tensorflow", HINT)

    def versions(self) -> dict[str, str]:
        return dist_version("tensorflow", "tensorflow-cpu")

    def configure(self, threads: int, device: str) -> dict[str, Any]:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import tensorflow as tf

        tf.get_logger().setLevel("ERROR")
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf32 = self.tf32
        facts: dict[str, Any] = {
            "intra_op_threads": threads,
            "inter_op_threads": 1,
            "onednn": os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1") != "0",
        }
        gpus = tf.config.list_physical_devices("GPU")
        self._memory_device = "GPU:0" if device == "cuda" and gpus else "CPU:0"
        for gpu in gpus:
            tf.config.experimental.set_memory_growth(gpu, True)
        if device == "cuda":
            tf.config.experimental.enable_tensor_float_32_execution(tf32)
            facts.update(tf32=tf32, gpus=[g.name for g in gpus])
        if not gpus:
            tf.config.set_visible_devices([], "GPU")
        return facts

    def prepare(
        self,
        problem: ConvProblem,
        arrays: dict[str, np.ndarray],
        strategy: Strategy,
        device: str,
        mode: str,
    ) -> Callable[[], tuple[Any, ...]]:
        import tensorflow as tf

        xla = strategy.form == "xla"
        fn = TABLE.bind(strategy, Kit(tf, problem))
        dtype = tf.as_dtype(problem.dtype)
        where = "/GPU:0" if device == "cuda" else "/CPU:0"

        with tf.device(where):

            def const(a: np.ndarray) -> Any:
                return tf.identity(tf.cast(tf.constant(np.ascontiguousarray(a)), dtype))

            x = const(from_canonical(arrays["x"], strategy.input_layout))
            w = const(arrays["w"])
            b = const(arrays["b"]) if problem.bias else None
            specs = [tf.TensorSpec(x.shape, dtype), tf.TensorSpec(w.shape, dtype)]
            if b is not None:
                specs.append(tf.TensorSpec(b.shape, dtype))

            if mode != "train":

                def forward(x: Any, w: Any, b: Any = None) -> Any:
                    return fn(x, w, b)

                graph = tf.function(
                    forward, input_signature=specs, jit_compile=xla
                ).get_concrete_function()
                args = (x, w, b) if b is not None else (x, w)

                def call() -> tuple[Any, ...]:
                    with tf.device(where):
                        return (graph(*args),)

                return call

            dy = const(from_canonical(arrays["dy"], strategy.output_layout))
            specs.append(tf.TensorSpec(dy.shape, dtype))

            def step(x: Any, w: Any, *rest: Any) -> tuple[Any, ...]:
                b, dy = (rest[0], rest[1]) if len(rest) == 2 else (None, rest[0])
                watched = [x, w] if b is None else [x, w, b]
                with tf.GradientTape() as tape:
                    tape.watch(watched)
                    y = fn(x, w, b)
                grads = tape.gradient(y, watched, output_gradients=dy)
                return (y, *grads)

            graph = tf.function(
                step, input_signature=specs, jit_compile=xla
            ).get_concrete_function()
            args = (x, w, b, dy) if b is not None else (x, w, dy)

            def train_call() -> tuple[Any, ...]:
                with tf.device(where):
                    return tuple(graph(*args))

            return train_call

    def device_memory(self, call: Callable[[], tuple[Any, ...]]) -> dict[str, Any] | None:
        """TensorFlow's allocator statistics over one call: on the CPU they exist when oneDNN is
        on (the default; its allocator keeps large blocks in a BFC pool, which is why the RSS
        of a warm call shows nothing), on a GPU always."""
        import tensorflow as tf

        name = getattr(self, "_memory_device", "CPU:0")
        try:
            before = tf.config.experimental.get_memory_info(name)["current"]
            tf.config.experimental.reset_memory_stats(name)
        except (ValueError, RuntimeError):  # a plain malloc-backed allocator keeps no statistics
            return None
        out = call()
        self.synchronize(out)
        peak = tf.config.experimental.get_memory_info(name)["peak"]
        del out
        pool = "oneDNN's CPU allocator pool" if name == "CPU:0" else "the GPU allocator"
        return {
            "peak_bytes": max(0, int(peak) - int(before)),
            "method": f"TensorFlow allocator statistics ({pool}): peak bytes in use over one call "
            "(reset_memory_stats) minus bytes in use before; blocks as the pool hands them out, "
            "small malloc'd allocations not counted",
            # the pool's blocks are not in a warm call's RSS, the small allocations are: the
            # harness may add the two when neither alone reaches the call's outputs
            "adds_to_rss": name == "CPU:0",
        }

    def synchronize(self, outputs: tuple[Any, ...]) -> None:
        import tensorflow as tf

        if any("GPU" in getattr(o, "device", "") for o in outputs):
            # waits for the GPU queues without copying the outputs to the host
            tf.test.experimental.sync_devices()
        # On CPU, TensorFlow's eager call returns when the kernels have finished.

    def to_numpy(self, outputs: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
        import tensorflow as tf

        return tuple(
            (tf.cast(o, tf.float32) if o.dtype == tf.bfloat16 else o).numpy() for o in outputs
        )
