"""Keras 3 on each of its backends: the seed question's three options and two more.

The Keras backend is fixed per worker process through ``KERAS_BACKEND`` before Keras is
imported (Keras reads it once per process), so ``keras-tensorflow``, ``keras-jax`` and
``keras-torch`` are three backends of one adapter. Every strategy is a Keras model built from
the canonical filters (one shared set of weights), in two call paths:

- ``<option>``: the model called under the backend's own compiled function (``tf.function``
  for TensorFlow, ``jax.jit`` of ``stateless_call`` for JAX, an eager call under
  ``torch.no_grad`` for PyTorch, which Keras does not compile by default);
- ``<option>_predict``: ``model.predict(x, batch_size=B)``, what the original experiment timed;
  it adds Keras's data-adapter and batching overhead and returns host arrays (forward only).

Train mode computes ``dx``, ``dw``, ``db`` with the backend's own autodiff on the model (one
training-step gradient, no optimizer); gradients of tied copies (tiled depthwise filters) are
summed back onto the shared filters inside the timed call.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any, NamedTuple

import numpy as np

from ._common import dist_version, missing_module
from .contract import Backend, Strategy, StrategyTable
from .layouts import from_canonical
from .problem import ConvProblem


def _keras_layer_supports(problem: ConvProblem, device: str, mode: str) -> str | None:
    if max(problem.stride) > 1 and max(problem.dilation) > 1:
        return "Keras convolution layers refuse strides > 1 together with dilation_rate > 1"
    return None


def _low_precision_training(keras_backend: str):
    """Measured with `sharedconv verify --suite conformance`: on CPU, TensorFlow's graph
    kernels and XLA:CPU sum the dw/db reductions in float16/bfloat16 (errors above the bound)."""

    def supports(problem: ConvProblem, device: str, mode: str) -> str | None:
        if (
            keras_backend in ("tensorflow", "jax")
            and mode == "train"
            and device == "cpu"
            and problem.dtype in ("float16", "bfloat16")
        ):
            engine = "TensorFlow's CPU kernels" if keras_backend == "tensorflow" else "XLA:CPU"
            return f"{engine} sum the dw/db gradients in {problem.dtype} under Keras (error above the bound); train in float32"
        return _keras_layer_supports(problem, device, mode)

    return supports


class Kit:
    """What every option's model builder needs of one problem, made once per prepared call:
    the sizes, Keras' padding and conv arguments, and the canonical filters to load."""

    def __init__(self, keras: Any, problem: ConvProblem, arrays: dict[str, np.ndarray]):
        self.keras, self.ops, self.problem, self.arrays = keras, keras.ops, problem, arrays
        self.B, self.C, self.H, self.W = problem.x_shape
        self.N, self.KH, self.KW = problem.w_shape
        self.ho, self.wo = problem.out_hw
        (pt, pb), (pl, pr) = problem.pads
        self.dtype = problem.dtype
        # Keras's "same" is TensorFlow's rule, like ours; anything else is explicit zero padding.
        same = problem.padding == "same"
        self.pad2 = None if same or (pt == pb == pl == pr == 0) else ((pt, pb), (pl, pr))
        self.padding = "same" if same else "valid"
        self.kernel_hw = np.transpose(arrays["w"], (1, 2, 0))  # (KH, KW, N)
        self.conv_kwargs = dict(
            strides=problem.stride,
            dilation_rate=problem.dilation,
            padding=self.padding,
            use_bias=problem.bias,
            dtype=self.dtype,
        )

    def load(self, layer: Any, kernel: np.ndarray, bias: np.ndarray | None = None) -> None:
        """The canonical filters (and bias) into the layer's variables."""
        layer.kernel.assign(kernel)
        if self.problem.bias:
            layer.bias.assign(self.arrays["b"] if bias is None else bias)

    def dw_of(self, gk: Any) -> Any:
        """A single (KH, KW, ..., N) kernel's gradient as the canonical (N, KH, KW)."""
        return self.ops.transpose(self.ops.reshape(gk, (self.KH, self.KW, self.N)), (2, 0, 1))

    def zero_pad_2d(self, x: Any) -> Any:
        if self.pad2 is None:
            return x
        return self.keras.layers.ZeroPadding2D(self.pad2, dtype=self.dtype)(x)


class Built(NamedTuple):
    """One option's model body: the layer holding the shared filters, the output, and the
    gradients of its variables as canonical ``dw`` and ``db``."""

    layer: Any
    y: Any
    dw: Callable[[Any], Any]
    db: Callable[[Any], Any] = lambda gb: gb


# Each option: its descriptor and its model builder ``f(kit, x) -> Built`` declared together.
# ``x`` is the model's input: (B, C, H, W, 1) for a "BCHW" option, (B, H, W, C) for "BHWC".
# Each option also runs through model.predict (the variant ``<option>_predict``).
TABLE = StrategyTable()


def _option(
    name: str,
    description: str,
    input_layout: str,
    output_layout: str,
    seed: int | None,
    formerly: tuple[str, ...] = (),
) -> Callable[[Callable], Callable]:
    def register(build: Callable) -> Callable:
        TABLE.strategy(
            name,
            description,
            input_layout=input_layout,
            output_layout=output_layout,
            seed_option=seed,
            tags=("keras",),
            formerly=formerly,
        )(build)
        TABLE.variant(
            name,
            form="predict",
            name=name + "_predict",
            description=description + "; timed through model.predict",
            differentiable=False,
            timed="model.predict(x, batch_size=B, verbose=0): data adapter, one batch, host copy of the output",
            supports_fn=_keras_layer_supports,
            tags=("keras", "predict"),
        )
        return build

    return register


@_option(
    "conv3d",
    "Conv3D with a (1, KH, KW) kernel on (B, C, H, W, 1) (the seed's option 1)",
    "BCHW",
    "BCHWN",
    1,
)
def conv3d(k: Kit, x: Any) -> Built:
    if k.pad2 is not None:
        x = k.keras.layers.ZeroPadding3D(((0, 0), *k.pad2), dtype=k.dtype)(x)
    layer = k.keras.layers.Conv3D(
        k.N,
        (1, k.KH, k.KW),
        strides=(1, *k.problem.stride),
        dilation_rate=(1, *k.problem.dilation),
        padding=k.padding,
        use_bias=k.problem.bias,
        dtype=k.dtype,
    )
    y = layer(x)
    k.load(layer, k.kernel_hw[None, :, :, None, :])
    return Built(layer, y, k.dw_of)


@_option(
    "time_distributed",
    "TimeDistributed(Conv2D) with the channels as 'time' on (B, C, H, W, 1) (the seed's option 2)",
    "BCHW",
    "BCHWN",
    2,
)
def time_distributed(k: Kit, x: Any) -> Built:
    layers = k.keras.layers
    if k.pad2 is not None:
        x = layers.TimeDistributed(layers.ZeroPadding2D(k.pad2, dtype=k.dtype), dtype=k.dtype)(x)
    layer = layers.Conv2D(k.N, (k.KH, k.KW), **k.conv_kwargs)
    y = layers.TimeDistributed(layer, dtype=k.dtype)(x)
    k.load(layer, k.kernel_hw[:, :, None, :])
    return Built(layer, y, k.dw_of)


@_option(
    "functional_split",
    "functional API: slice each channel of (B, H, W, C), one shared Conv2D, stack (the seed's option 3)",
    "BHWC",
    "BHWCN",
    3,
)
def functional_split(k: Kit, x: Any) -> Built:
    x = k.zero_pad_2d(x)
    layer = k.keras.layers.Conv2D(k.N, (k.KH, k.KW), **k.conv_kwargs)
    y = k.ops.stack([layer(x[..., c : c + 1]) for c in range(k.C)], axis=3)
    k.load(layer, k.kernel_hw[:, :, None, :])
    return Built(layer, y, k.dw_of)


@_option(
    "grouped",
    "DepthwiseConv2D(depth_multiplier=N) with the filters tiled C times on (B, H, W, C)",
    "BHWC",
    "BHWCN",
    None,
    formerly=("depthwise_tied",),  # the name PyTorch, TensorFlow and JAX give the same idea
)
def grouped(k: Kit, x: Any) -> Built:
    ops = k.ops
    x = k.zero_pad_2d(x)
    layer = k.keras.layers.DepthwiseConv2D((k.KH, k.KW), depth_multiplier=k.N, **k.conv_kwargs)
    y = ops.reshape(layer(x), (k.B, k.ho, k.wo, k.C, k.N))
    bias = np.tile(k.arrays["b"], k.C) if k.problem.bias else None
    k.load(layer, np.tile(k.kernel_hw[:, :, None, :], (1, 1, k.C, 1)), bias)
    # tied copies: the shared filter's gradient is the sum over the C copies
    return Built(
        layer,
        y,
        dw=lambda gk: ops.transpose(ops.sum(gk, axis=2), (2, 0, 1)),
        db=lambda gb: ops.sum(ops.reshape(gb, (k.C, k.N)), axis=0),
    )


@_option(
    "fold",
    "Reshape the channels into the batch, one Conv2D on (B*C, H, W, 1)",
    "BCHW",
    "BCHWN",
    None,
)
def fold(k: Kit, x: Any) -> Built:
    B, C, H, W = k.B, k.C, k.H, k.W
    x = k.keras.layers.Reshape((H, W, 1), dtype=k.dtype)(k.ops.reshape(x, (B * C, H, W, 1)))
    x = k.zero_pad_2d(x)
    layer = k.keras.layers.Conv2D(k.N, (k.KH, k.KW), **k.conv_kwargs)
    y = k.ops.reshape(layer(x), (B, C, k.ho, k.wo, k.N))
    k.load(layer, k.kernel_hw[:, :, None, :])
    return Built(layer, y, k.dw_of)


def _build_model(
    keras: Any, problem: ConvProblem, strategy: Strategy, arrays: dict[str, np.ndarray]
) -> tuple[Any, Callable]:
    """The Keras model of ``strategy`` (or of its base, for a variant) with the canonical
    filters loaded, and a function that turns the gradients of its (kernel, bias) variables
    into canonical ``(dw, db)``."""
    k = Kit(keras, problem, arrays)
    B, C, H, W = problem.x_shape
    if strategy.input_layout == "BCHW":
        inputs = keras.Input(shape=(C, H, W), batch_size=B, dtype=k.dtype)
        x = keras.layers.Reshape((C, H, W, 1), dtype=k.dtype)(inputs)
    else:
        inputs = keras.Input(shape=(H, W, C), batch_size=B, dtype=k.dtype)
        x = inputs
    built = TABLE.builder_of(strategy)(k, x)
    model = keras.Model(inputs, built.y)

    def to_canonical(grads: list[Any]) -> tuple[Any, ...]:
        dw = built.dw(grads[0])
        return (dw, built.db(grads[1])) if problem.bias else (dw,)

    model._sharedconv_layer = built.layer  # the layer whose variables are the shared filters
    return model, to_canonical


# Options built on DepthwiseConv2D: under Keras on TensorFlow they run TensorFlow's CPU depthwise
# kernel, which takes equal row and column strides only (the plugin conformance kit's random
# problems found it, stride 1x2: "Current implementation only supports equal length strides").
_DEPTHWISE = {"grouped"}


def _backend_supports(keras_backend: str, strategy: Strategy) -> Callable[..., str | None]:
    """What one Keras backend refuses of an option, besides what the option refuses itself."""
    own = strategy.supports_fn if strategy.form else _low_precision_training(keras_backend)
    depthwise = keras_backend == "tensorflow" and (strategy.base or strategy.name) in _DEPTHWISE

    def supports(problem: ConvProblem, device: str, mode: str) -> str | None:
        if depthwise and device == "cpu" and problem.stride[0] != problem.stride[1]:
            return (
                "Keras' DepthwiseConv2D runs TensorFlow's CPU depthwise kernel here, which takes "
                f"equal row and column strides only, not {problem.stride[0]}x{problem.stride[1]}; "
                "keras-jax and keras-torch run it, and tensorflow/grouped_xla"
            )
        return own(problem, device, mode) if own is not None else None

    return supports


class _KerasBackend(Backend):
    keras_backend = ""
    devices = ("cpu", "cuda")

    @property
    def strategies(self) -> tuple[Strategy, ...]:  # type: ignore[override]
        path = {
            "tensorflow": "tf.function (graph)",
            "jax": "jax.jit of model.stateless_call",
            "torch": "an eager model(x) call (Keras does not compile torch models by default)",
        }[self.keras_backend]
        return tuple(
            replace(
                s,
                supports_fn=_backend_supports(self.keras_backend, s),
                **({} if s.form else {"timed": f"the Keras model called through {path}"}),
            )
            for s in TABLE.strategies
        )

    def _framework(self) -> Backend:
        from .registry import load_backend

        return load_backend(self.keras_backend)

    def available(self) -> str | None:
        framework_module = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[
            self.keras_backend
        ]
        return missing_module("keras", self.install_hint) or missing_module(
            framework_module, self.install_hint
        )

    def versions(self) -> dict[str, str]:
        return {**dist_version("keras"), **self._framework().versions()}

    def configure(self, threads: int, device: str) -> dict[str, Any]:
        current = os.environ.get("KERAS_BACKEND")
        if "keras" in sys.modules and current not in (None, self.keras_backend):
            raise RuntimeError(
                f"Keras was already imported with backend {current!r} in this process; "
                f"{self.name} needs a fresh worker process"
            )
        os.environ["KERAS_BACKEND"] = self.keras_backend
        facts = self._framework().configure(threads, device)
        import keras

        if keras.backend.backend() != self.keras_backend:
            raise RuntimeError(
                f"Keras picked backend {keras.backend.backend()!r}, not {self.keras_backend!r}"
            )
        return {**facts, "keras_backend": self.keras_backend}

    def prepare(
        self,
        problem: ConvProblem,
        arrays: dict[str, np.ndarray],
        strategy: Strategy,
        device: str,
        mode: str,
    ) -> Callable[[], tuple[Any, ...]]:
        import keras

        keras.utils.clear_session()
        # predict() casts NumPy inputs to floatx: a float64 user sets floatx to float64.
        keras.config.set_floatx("float64" if problem.dtype == "float64" else "float32")
        model, grads_to_canonical = _build_model(keras, problem, strategy, arrays)
        # canonical arrays are already in the storage dtype (bfloat16 travels as float32)
        x_np = np.ascontiguousarray(from_canonical(arrays["x"], strategy.input_layout))
        x = keras.ops.convert_to_tensor(x_np, dtype=problem.dtype)
        if strategy.form == "predict":
            batch = problem.B
            return lambda: (model.predict(x_np, batch_size=batch, verbose=0),)
        dy = None
        if mode == "train":
            dy_np = np.ascontiguousarray(from_canonical(arrays["dy"], strategy.output_layout))
            dy = keras.ops.convert_to_tensor(dy_np, dtype=problem.dtype)
        builder = {
            "tensorflow": self._prepare_tf,
            "jax": self._prepare_jax,
            "torch": self._prepare_torch,
        }
        return builder[self.keras_backend](model, x, dy, grads_to_canonical, mode)

    # ---- one call path per Keras backend ------------------------------------------------------
    @staticmethod
    def _prepare_tf(
        model: Any, x: Any, dy: Any, grads_to_canonical: Callable, mode: str
    ) -> Callable:
        import tensorflow as tf

        layer = model._sharedconv_layer
        variables = [layer.kernel.value] + ([layer.bias.value] if layer.use_bias else [])
        if mode != "train":
            fn = tf.function(lambda x: model(x, training=False)).get_concrete_function(x)
            return lambda: (fn(x),)

        @tf.function
        def step(x: Any, dy: Any) -> tuple[Any, ...]:
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = model(x, training=True)
            grads = tape.gradient(y, [x, *variables], output_gradients=dy)
            return (y, grads[0], *grads_to_canonical(grads[1:]))

        concrete = step.get_concrete_function(x, dy)
        return lambda: tuple(concrete(x, dy))

    @staticmethod
    def _prepare_jax(
        model: Any, x: Any, dy: Any, grads_to_canonical: Callable, mode: str
    ) -> Callable:
        import jax

        layer = model._sharedconv_layer
        trainable = [v.value for v in model.trainable_variables]
        non_trainable = [v.value for v in model.non_trainable_variables]
        kernel_index = [id(v) for v in model.trainable_variables].index(id(layer.kernel))
        bias_index = (
            [id(v) for v in model.trainable_variables].index(id(layer.bias))
            if layer.use_bias
            else None
        )

        def apply(trainable: list[Any], x: Any) -> Any:
            y, _ = model.stateless_call(trainable, non_trainable, x, training=mode == "train")
            return y

        if mode != "train":
            compiled = jax.jit(apply).lower(trainable, x).compile()

            def call() -> tuple[Any, ...]:
                return (compiled(trainable, x),)

            call.compiled = compiled  # type: ignore[attr-defined]  # XLA's plan: device_memory
            return call

        def step(trainable: list[Any], x: Any, dy: Any) -> tuple[Any, ...]:
            y, pullback = jax.vjp(apply, trainable, x)
            g_vars, dx = pullback(dy)
            picked = [g_vars[kernel_index]] + (
                [g_vars[bias_index]] if bias_index is not None else []
            )
            return (y, dx, *grads_to_canonical(picked))

        compiled = jax.jit(step).lower(trainable, x, dy).compile()

        def train_call() -> tuple[Any, ...]:
            return compiled(trainable, x, dy)

        train_call.compiled = compiled  # type: ignore[attr-defined]  # XLA's plan: device_memory
        return train_call

    @staticmethod
    def _prepare_torch(
        model: Any, x: Any, dy: Any, grads_to_canonical: Callable, mode: str
    ) -> Callable:
        import torch

        layer = model._sharedconv_layer
        if mode != "train":

            def forward() -> tuple[Any, ...]:
                with torch.no_grad():
                    return (model(x, training=False),)

            return forward

        x = x.detach().requires_grad_(True)
        variables = [layer.kernel.value] + ([layer.bias.value] if layer.use_bias else [])

        def step() -> tuple[Any, ...]:
            y = model(x, training=True)
            grads = torch.autograd.grad(y, [x, *variables], grad_outputs=dy)
            return (y.detach(), grads[0], *grads_to_canonical(list(grads[1:])))

        return step

    def device_memory(self, call: Callable[[], tuple[Any, ...]]) -> dict[str, Any] | None:
        # Keras' calls run on the backend framework's allocator, so its accounting answers (on
        # the CPU, JAX's is XLA's plan of the executable a compiled call carries; predict's
        # calls carry none: None)
        return self._framework().device_memory(call)

    def synchronize(self, outputs: tuple[Any, ...]) -> None:
        if self.keras_backend == "jax":
            import jax

            jax.block_until_ready(outputs)
        else:
            self._framework().synchronize(
                tuple(o for o in outputs if not isinstance(o, np.ndarray))
            )

    def to_numpy(self, outputs: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
        import keras

        out = []
        for o in outputs:
            a = o if isinstance(o, np.ndarray) else keras.ops.convert_to_numpy(o)
            if a.dtype.name == "bfloat16":
                a = a.astype(np.float32)
            out.append(np.asarray(a))
        return tuple(out)


class KerasTensorflowBackend(_KerasBackend):
    name = "keras-tensorflow"
    keras_backend = "tensorflow"
    install_hint = "pip install 'sharedconv[keras,tensorflow]'"


class KerasJaxBackend(_KerasBackend):
    name = "keras-jax"
    keras_backend = "jax"
    install_hint = "pip install 'sharedconv[keras,jax]'"


class KerasTorchBackend(_KerasBackend):
    name = "keras-torch"
    keras_backend = "torch"
    install_hint = "pip install 'sharedconv[keras,torch]'"
