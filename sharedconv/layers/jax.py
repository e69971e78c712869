"""Shared-channel convolution for JAX: a pure function and an Equinox module.

    from sharedconv.layers.jax import shared_conv2d, SharedConv2d
    y = shared_conv2d(x, w, b, padding="same")     # x (B, C, H, W), w (N, KH, KW) -> (B, C, N, H', W')
    conv = SharedConv2d(16, 3, key=jax.random.key(0)); y = conv(x)

The strategy is chosen when the function is traced (shapes are static there), so it works
under ``jax.jit``, ``jax.grad`` and ``jax.vmap``; under a trace the candidates are verified and
timed on synthetic inputs of the traced shapes (the real values are not known yet). ``mode``
says what to tune for: ``"train"`` (forward and backward, the default) or ``"forward"``.

Equinox is the module system: its modules are plain pytrees, so ``jit``, ``grad`` and ``vmap``
apply to them unchanged, and it adds no state or framework of its own (Flax NNX would bring
Orbax and TensorStore with it). ``import sharedconv.layers.jax`` does not need Equinox; only
:class:`SharedConv2d` does.
"""

from __future__ import annotations

import concurrent.futures
import math
from typing import Any

import jax
import jax.numpy as jnp

from . import _core, _frameworks
from ._core import LayerError, Selector

IN_LAYOUT, OUT_LAYOUT = "BCHW", "BCNHW"
PRECISIONS = ("highest", "default")
_SELECTORS: dict[tuple[Any, ...], Selector] = {}


def strategies() -> list[str]:
    """The strategies :func:`shared_conv2d` can run (every strategy of the JAX backend:
    ``_core.layer_strategies``)."""
    return _core.layer_strategies("jax")


def _selector(strategy: str, budget: float | None, results: Any) -> Selector:
    key = (strategy, budget, str(results))
    if key not in _SELECTORS:
        _SELECTORS[key] = Selector(strategy=strategy, budget=budget, results=results)
    return _SELECTORS[key]


def last_choice(strategy: str = "auto") -> _core.Choice | None:
    """The decision made for the latest traced call with this ``strategy`` setting."""
    for (s, _, _), selector in reversed(list(_SELECTORS.items())):
        if s == strategy and selector.last is not None:
            return selector.last
    return None


def _frozen(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


def _platform(x: Any) -> str:
    if isinstance(x, jax.core.Tracer):
        return jax.default_backend()
    try:
        return next(iter(x.devices())).platform
    except (AttributeError, StopIteration):
        return jax.default_backend()


def shared_conv2d(
    x: Any,
    w: Any,
    b: Any = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = "valid",
    dilation: int | tuple[int, int] = 1,
    strategy: str = "auto",
    mode: str = "train",
    precision: str = "highest",
    tune_budget: float | None = None,
    results: Any = None,
) -> Any:
    """``x (B, C, H, W)`` with filters ``w (N, KH, KW)`` and bias ``b (N,)`` on every channel:
    ``(B, C, N, H', W')``. ``precision="highest"`` computes float32 in float32 on GPUs too;
    ``"default"`` lets XLA use TF32 there (verified against TF32's bound)."""
    selector = _selector(strategy, tune_budget, results)
    eager = not isinstance(x, jax.core.Tracer)
    if eager:  # the per-call path of eager calls: one tuple, one dict lookup
        try:
            fast_key = (
                x.shape,
                x.dtype,
                x.sharding,
                w.shape,
                w.dtype,
                b is None,
                _frozen(stride),
                _frozen(padding),
                _frozen(dilation),
                mode,
                precision,
            )
            fast = selector.memo.get(fast_key)
        except (AttributeError, TypeError):  # not arrays: the checks below say what is wrong
            fast_key, fast = None, None
        if fast is not None:
            selector.last = fast[0]
            return fast[1](x, w, b)
    if mode not in ("train", "forward"):
        raise LayerError(f"mode must be 'train' or 'forward', got {mode!r}")
    if precision not in PRECISIONS:
        raise LayerError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if getattr(x, "ndim", None) != 4:
        raise LayerError(
            f"x must be 4-D (B, C, H, W), got shape {getattr(x, 'shape', type(x).__name__)}"
        )
    if getattr(w, "ndim", None) != 3:
        raise LayerError(
            f"w must be 3-D (N, KH, KW), got shape {getattr(w, 'shape', type(w).__name__)}"
        )
    if b is not None and tuple(b.shape) != (w.shape[0],):
        raise LayerError(f"b must have shape ({w.shape[0]},) to match w, got {tuple(b.shape)}")
    if x.dtype != w.dtype or (b is not None and b.dtype != x.dtype):
        raise LayerError(
            f"x, w and b must share a dtype; got {x.dtype}, {w.dtype}, {None if b is None else b.dtype}"
        )
    _core.check_strategy(strategy, strategies())
    platform = _platform(x)
    pad = padding if isinstance(padding, str) else _core.pair(padding, "padding")
    problem = _core.make_problem(
        tuple(x.shape),
        IN_LAYOUT,
        int(w.shape[0]),
        (int(w.shape[1]), int(w.shape[2])),
        _core.pair(stride, "stride"),
        pad,
        _core.pair(dilation, "dilation"),
        b is not None,
        jnp.dtype(x.dtype).name,
    )
    memo_key = (problem, mode, platform, precision)
    memo = selector.memo.get(memo_key)
    if memo is None:
        # in a thread of its own: the candidates compile and run outside the caller's trace
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            memo = pool.submit(
                _choose, selector, problem, mode, platform, precision, x, w, b
            ).result()
        selector.memo[memo_key] = memo
    if eager and fast_key is not None:
        selector.memo[fast_key] = (
            memo[0],
            memo[1],
            platform,
        )  # the next eager call skips the checks
    selector.last = memo[0]
    return memo[1](x, w, b)


def _choose(
    selector: Selector,
    problem: Any,
    mode: str,
    platform: str,
    precision: str,
    x: Any,
    w: Any,
    b: Any,
) -> tuple:
    from ..backends.registry import load_backend

    backend = load_backend("jax")
    device = "cpu" if platform == "cpu" else "cuda"
    key = _frameworks.jax_key(problem, mode, platform, f"{IN_LAYOUT}->{OUT_LAYOUT}", precision)
    builders = _frameworks.jax_builders(problem, precision)

    def candidates() -> tuple[dict, dict]:
        return _core.candidates_for(
            backend, builders, problem, device, mode, IN_LAYOUT, OUT_LAYOUT, _frameworks.jax_permute
        )

    def runner() -> _core.Runner:
        return _frameworks.jax_runner(problem, x, w, b, IN_LAYOUT, OUT_LAYOUT, platform)

    tf32 = precision == "default" and device == "cuda"
    return _core.choose(selector, key, problem, candidates, runner, tf32=tf32, compiled=True)


def _module_class() -> type:
    try:
        import equinox as eqx
    except ImportError:
        raise ImportError(
            "SharedConv2d needs Equinox: pip install equinox (or use shared_conv2d)"
        ) from None

    class SharedConv2d(eqx.Module):
        """An Equinox module: ``weight (N, KH, KW)``, ``bias (N,)``; input ``(B, C, H, W)``,
        output ``(B, C, N, H', W')``. Initialised as ``eqx.nn.Conv2d(1, N, k)`` initialises
        its own (uniform in ±1/sqrt(KH*KW))."""

        weight: Any
        bias: Any
        stride: tuple[int, int] = eqx.field(static=True)
        padding: Any = eqx.field(static=True)
        dilation: tuple[int, int] = eqx.field(static=True)
        strategy: str = eqx.field(static=True)
        mode: str = eqx.field(static=True)
        precision: str = eqx.field(static=True)

        def __init__(
            self,
            filters: int,
            kernel_size: int | tuple[int, int],
            stride: int | tuple[int, int] = 1,
            padding: int | tuple[int, int] | str = "valid",
            dilation: int | tuple[int, int] = 1,
            use_bias: bool = True,
            strategy: str = "auto",
            mode: str = "train",
            precision: str = "highest",
            *,
            key: Any,
            dtype: Any = jnp.float32,
        ) -> None:
            filters = _core.check_filters(filters)
            _core.check_strategy(strategy, strategies())
            kh, kw = _core.pair(kernel_size, "kernel_size")
            lim = 1 / math.sqrt(kh * kw)
            wkey, bkey = jax.random.split(key)
            self.weight = jax.random.uniform(wkey, (filters, kh, kw), dtype, -lim, lim)
            self.bias = jax.random.uniform(bkey, (filters,), dtype, -lim, lim) if use_bias else None
            self.stride = _core.pair(stride, "stride")
            self.padding = padding if isinstance(padding, str) else _core.pair(padding, "padding")
            self.dilation = _core.pair(dilation, "dilation")
            self.strategy, self.mode, self.precision = strategy, mode, precision

        def __call__(self, x: Any) -> Any:
            return shared_conv2d(
                x,
                self.weight,
                self.bias,
                stride=self.stride,
                padding=self.padding,
                dilation=self.dilation,
                strategy=self.strategy,
                mode=self.mode,
                precision=self.precision,
            )

        @property
        def choice(self) -> _core.Choice | None:
            return last_choice(self.strategy)

    return SharedConv2d


def __getattr__(name: str) -> Any:
    if name == "SharedConv2d":
        cls = _module_class()
        globals()["SharedConv2d"] = cls
        return cls
    raise AttributeError(name)
