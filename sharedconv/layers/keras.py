"""``SharedConv2D``: a Keras 3 layer for N 2-D filters shared across every input channel.

    from sharedconv.layers.keras import SharedConv2D
    x = keras.Input((64, 64, 100))                      # channels_last: (H, W, C)
    y = SharedConv2D(16, 3, padding="same")(x)          # -> (B, 64, 64, 100, 16)

This is the layer the 2017 question (Conv3D vs TimeDistributed(Conv2D) vs split) was looking
for. It runs on all three Keras backends: each call runs a strategy of the backend's own
framework (``backends/tensorflow_backend.py``, ``jax_backend.py`` or ``torch_backend.py``) on the
framework's tensors, so Keras' autodiff and compilation see ordinary framework operations.
``strategy="auto"`` picks the fastest verified one per input shape, dtype and mode (``training``
selects forward+backward tuning); a strategy name pins it.
"""

from __future__ import annotations

import concurrent.futures
from typing import Any

import keras

from . import _core, _frameworks
from ._core import LayerError, Selector

# the batch a TensorFlow decision is made for when Keras traces with an unknown batch (fit's default)
TUNE_BATCH = 32
_BACKENDS = ("tensorflow", "jax", "torch")


def strategies(backend: str | None = None) -> list[str]:
    """The strategies the layer can run on a Keras backend (the current one by default):
    ``_core.layer_strategies`` of the backend's framework (on torch with ``native``)."""
    backend = backend or keras.backend.backend()
    if backend not in _BACKENDS:
        raise LayerError(
            f"Keras backend {backend!r} is not supported; use tensorflow, jax or torch"
        )
    return _core.layer_strategies(backend)


@keras.saving.register_keras_serializable(package="sharedconv")
class SharedConv2D(keras.layers.Layer):
    """N filters applied to every channel separately, no channel mixing.

    ``data_format="channels_last"`` (Keras' default): input ``(B, H, W, C)``, output
    ``(B, H', W', C, filters)``; ``"channels_first"``: ``(B, C, H, W)`` to ``(B, C, filters,
    H', W')``. The kernel is ``(KH, KW, 1, filters)``, the kernel of the one-input-channel
    ``Conv2D`` it replaces (weights load across), and the bias ``(filters,)``.
    """

    def __init__(
        self,
        filters: int,
        kernel_size: int | tuple[int, int],
        strides: int | tuple[int, int] = 1,
        padding: str = "valid",
        dilation_rate: int | tuple[int, int] = 1,
        use_bias: bool = True,
        data_format: str | None = None,
        strategy: str = "auto",
        kernel_initializer: Any = "glorot_uniform",
        bias_initializer: Any = "zeros",
        tune_budget: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        filters = _core.check_filters(filters)
        if not isinstance(padding, str) or padding.lower() not in ("valid", "same"):
            raise LayerError(f"padding must be 'valid' or 'same', got {padding!r}")
        self.filters = filters
        self.kernel_size = _core.pair(kernel_size, "kernel_size")
        self.strides = _core.pair(strides, "strides")
        self.dilation_rate = _core.pair(dilation_rate, "dilation_rate")
        self.padding = padding.lower()
        self.use_bias = bool(use_bias)
        self.data_format = data_format or keras.config.image_data_format()
        if self.data_format not in ("channels_last", "channels_first"):
            raise LayerError(
                f"data_format must be 'channels_last' or 'channels_first', got {data_format!r}"
            )
        _core.check_strategy(
            strategy, strategies(), f" on Keras' {keras.backend.backend()} backend"
        )
        self.strategy = strategy
        self.tune_budget = tune_budget
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        self._selector = Selector(strategy=strategy, budget=tune_budget)
        channels_last = self.data_format == "channels_last"
        self._layouts = ("BHWC", "BHWCN") if channels_last else ("BCHW", "BCNHW")
        # per dtype of a variable's value: whether it must be cast to the compute dtype; a
        # plain dict, set past Keras' attribute tracking (a dict set as a layer's attribute
        # becomes a TrackedDict, whose lookups are Python code on every call). The decisions,
        # by (input shape, mode), are the selector's memo, of the policy ``_policy``.
        # (Keras' InputSpec is not used: its check cost 10-16 µs on every eager call, more than
        # the rest of the dispatch; the input's rank is checked where a new shape is met)
        object.__setattr__(self, "_cast_needed", {})
        self._new_policy()

    def build(self, input_shape: tuple[Any, ...]) -> None:
        self._check_rank(input_shape)
        self.kernel = self.add_weight(
            name="kernel", shape=self._kernel_shape, initializer=self.kernel_initializer
        )
        self.bias = (
            self.add_weight(name="bias", shape=(self.filters,), initializer=self.bias_initializer)
            if self.use_bias
            else None
        )

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(),
            "filters": self.filters,
            "kernel_size": self.kernel_size,
            "strides": self.strides,
            "padding": self.padding,
            "dilation_rate": self.dilation_rate,
            "use_bias": self.use_bias,
            "data_format": self.data_format,
            "strategy": self.strategy,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
            "tune_budget": self.tune_budget,
        }

    @property
    def _kernel_shape(self) -> tuple[int, ...]:
        return (*self.kernel_size, 1, self.filters)

    @property
    def choice(self) -> _core.Choice | None:
        """The decision behind the latest call: strategy, source, candidates and their times."""
        return self._selector.last

    def _check_rank(self, shape: tuple[Any, ...]) -> None:
        if len(shape) != 4:
            raise LayerError(
                f"SharedConv2D takes 4-D inputs ({self._layouts[0]}, data_format="
                f"{self.data_format!r}), got shape {tuple(shape)}"
            )

    def _problem(self, shape: tuple[Any, ...]) -> Any:
        self._check_rank(shape)
        dims = dict(zip(self._layouts[0], shape, strict=True))
        if dims["B"] is None and keras.backend.backend() == "tensorflow":
            # Keras traces TensorFlow training steps with an unknown batch; the strategies
            # leave the batch to TensorFlow, so the decision is made for a typical batch
            shape = tuple(TUNE_BATCH if a == "B" else dims[a] for a in self._layouts[0])
        if any(d is None for d in shape):
            raise LayerError(
                f"SharedConv2D needs a known input shape when it runs, got {tuple(shape)}; "
                "give keras.Input its full shape"
            )
        return _core.make_problem(
            shape,
            self._layouts[0],
            self.filters,
            self.kernel_size,
            self.strides,
            self.padding,
            self.dilation_rate,
            self.use_bias,
            keras.backend.standardize_dtype(self.compute_dtype),
        )

    def compute_output_shape(self, input_shape: tuple[Any, ...]) -> tuple[Any, ...]:
        self._check_rank(input_shape)
        dims = dict(zip(self._layouts[0], input_shape, strict=True))
        out = {}
        for axis, size, k, s, d in (
            ("H", dims["H"], self.kernel_size[0], self.strides[0], self.dilation_rate[0]),
            ("W", dims["W"], self.kernel_size[1], self.strides[1], self.dilation_rate[1]),
        ):
            if size is None:
                out[axis] = None
            elif self.padding == "same":
                out[axis] = -(-size // s)
            else:
                out[axis] = (size - d * (k - 1) - 1) // s + 1
        sizes = {"B": dims["B"], "C": dims["C"], "N": self.filters, **out}
        return tuple(sizes[a] for a in self._layouts[1])

    def call(self, inputs: Any, training: bool | None = None) -> Any:
        # the per-call path, kept short: in eager mode its every line is paid on every call,
        # and after a framework's eager ops it runs with cold caches
        if self.dtype_policy is not self._policy:  # a new policy: new dtypes, new decisions
            self._new_policy()
        kernel = self._computed(self.kernel)
        b = None if self.bias is None else self._computed(self.bias)
        mode = "train" if training else "forward"
        shape = tuple(inputs.shape)
        hit = self._selector.memo.get((shape, mode))
        if hit is None:
            hit = self._dispatch(shape, inputs, kernel, b, mode)
        self._selector.last = hit[0]
        return hit[1](inputs, kernel, b)

    def _new_policy(self) -> None:
        policy = self._policy = self.dtype_policy
        # variables stored in the compute dtype: their values are in it (inside Keras'
        # __call__, the autocast scope, if any, is the layer's compute dtype), so no check
        self._plain = policy.variable_dtype == policy.compute_dtype
        self._selector.memo.clear()
        self._cast_needed.clear()

    def _filters(self, kernel: Any) -> Any:
        """The ``(KH, KW, 1, N)`` kernel as the strategies' ``(N, KH, KW)`` filters. Part of
        every candidate's call, so the autotune times what the layer runs: a compiler may lay
        the filters out for the strategy from the kernel. When the candidates took ready-made
        filters, Keras on JAX at B=2,C=100,64x64,N=16,K=7 picked `lax_map`, 1.65x slower in
        the model than `shift_add` (docs/layers.md)."""
        kh, kw = self.kernel_size
        return keras.ops.transpose(keras.ops.reshape(kernel, (kh, kw, self.filters)), (2, 0, 1))

    def _computed(self, variable: Any) -> Any:
        """The variable's value (what ``convert_to_tensor`` gives for a Keras variable: in a
        stateless call the value given for it, under an autocast scope cast) in the compute
        dtype (a mixed-precision policy computes in float16/bfloat16); no cast, and no op in
        eager mode, when it already is. ``value`` rather than ``convert_to_tensor``: on
        TensorFlow the latter returns the Keras variable itself, whose ``dtype`` reads the
        autocast scope on every call."""
        value = variable.value
        if self._plain:
            return value
        cast = self._cast_needed.get(value.dtype)
        if cast is None:  # once per dtype: standardize_dtype costs microseconds a call
            cast = keras.backend.standardize_dtype(value.dtype) != self.compute_dtype
            self._cast_needed[value.dtype] = cast
        if cast:
            value = keras.ops.cast(value, self.compute_dtype)
        return value

    def _dispatch(self, shape: tuple, x: Any, w: Any, b: Any, mode: str) -> tuple:
        """``(choice, the strategy's call)`` for an input of ``shape`` in ``mode``, met for the
        first time under this policy; ``w`` is the layer's kernel (the candidates make the
        filters from it, see ``_filters``)."""
        backend = keras.backend.backend()
        problem = self._problem(shape)
        # the kernel is part of what is timed (see _filters): decisions made before it was are
        # not reused
        layout = f"{self._layouts[0]}->{self._layouts[1]}, kernel KHW1N"
        choosers = {
            "torch": self._choose_torch,
            "jax": self._choose_jax,
            "tensorflow": self._choose_tf,
        }
        if backend not in choosers:
            raise LayerError(
                f"Keras backend {backend!r} is not supported; use tensorflow, jax or torch"
            )
        if backend == "torch":
            choice, fn = self._choose_torch(problem, mode, layout, x, w, b)
        else:
            # in a thread of its own: JAX's traces and TensorFlow's graphs and tapes are per
            # thread, so the candidates compile and run outside whatever Keras is tracing
            with concurrent.futures.ThreadPoolExecutor(1) as pool:
                choice, fn = pool.submit(choosers[backend], problem, mode, layout, x, w, b).result()
        self._selector.memo[(shape, mode)] = (choice, fn)
        return choice, fn

    def _choose(
        self, problem: Any, key: Any, candidates: Any, runner: Any, compiled: bool = True
    ) -> tuple:
        """``compiled``: the candidates are traced or compiled for the shape (TensorFlow's
        graphs, JAX's jit), not run eagerly (PyTorch)."""
        return _core.choose(self._selector, key, problem, candidates, runner, compiled=compiled)

    def _backend_candidates(
        self, framework: str, problem: Any, mode: str, device: str, builders: dict, permute: Any
    ) -> Any:
        """Keras on TensorFlow or JAX: the backend's strategies, permuted to the layer's
        layouts, each making the filters from the layer's kernel."""
        from ..backends.registry import load_backend

        def candidates() -> tuple[dict, dict]:
            return _core.candidates_for(
                load_backend(framework),
                builders,
                problem,
                device,
                mode,
                *self._layouts,
                permute,
                weights=self._filters,
            )

        return candidates

    def _choose_torch(self, problem: Any, mode: str, layout: str, x: Any, w: Any, b: Any) -> tuple:
        device = x.device
        where = "cpu" if device.type == "cpu" else "cuda"

        def candidates() -> tuple[dict, dict]:  # PyTorch's strategies and the native kernel
            return _frameworks.torch_candidates(problem, where, mode, self._layouts, self._filters)

        return self._choose(
            problem,
            _frameworks.torch_key(problem, mode, device, layout),
            candidates,
            lambda: _frameworks.torch_runner(problem, x, w, b, self._layouts[1]),
            compiled=False,
        )

    def _choose_jax(self, problem: Any, mode: str, layout: str, x: Any, w: Any, b: Any) -> tuple:
        import jax

        platform = jax.default_backend()
        return self._choose(
            problem,
            _frameworks.jax_key(problem, mode, platform, layout, "highest"),
            self._backend_candidates(
                "jax",
                problem,
                mode,
                "cpu" if platform == "cpu" else "cuda",
                _frameworks.jax_builders(problem, "highest"),
                _frameworks.jax_permute,
            ),
            lambda: _frameworks.jax_runner(problem, x, w, b, *self._layouts, platform),
        )

    def _choose_tf(self, problem: Any, mode: str, layout: str, x: Any, w: Any, b: Any) -> tuple:
        import tensorflow as tf

        gpus = tf.config.list_logical_devices("GPU")
        device = "cpu" if not gpus else gpus[0].name
        return self._choose(
            problem,
            _frameworks.tf_key(problem, mode, device, layout),
            self._backend_candidates(
                "tensorflow",
                problem,
                mode,
                "cpu" if not gpus else "cuda",
                _frameworks.tf_builders(problem),
                _frameworks.tf_permute,
            ),
            lambda: _frameworks.tf_runner(problem, x, w, b, *self._layouts),
        )
