"""How each framework runs a layer's candidates: builders, permutes, runners, keys.

Each function imports its framework when called; this module itself imports none.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..backends.layouts import shape_in
from ..backends.problem import ConvProblem
from ._core import Key, Runner, machine_id

SEED = 20171  # the year the question was asked, and one more digit


def _synthetic(problem: ConvProblem, shape: tuple[int, ...], salt: int) -> np.ndarray:
    rng = np.random.default_rng(SEED + salt)
    return rng.standard_normal(shape).astype(
        np.float32 if problem.dtype != "float64" else np.float64
    )


# --------------------------------------------------------------------------- torch


def torch_key(problem: ConvProblem, mode: str, device: Any, layout: str) -> Key:
    import torch

    name = "cpu" if device.type == "cpu" else torch.cuda.get_device_name(device)
    return Key(
        framework="torch",
        framework_version=torch.__version__,
        device=name,
        threads=torch.get_num_threads(),
        machine=machine_id(),
        problem=problem.to_text(),
        mode=mode,
        layout=layout,
    )


def torch_builders(problem: ConvProblem) -> dict[str, Callable]:
    import torch

    from ..backends.torch_backend import _builders

    return _builders(torch, problem)


def torch_permute(a: Any, perm: tuple[int, ...]) -> Any:
    return a.permute(*perm).contiguous()  # what the layer returns is dense in its layout


def torch_runner(problem: ConvProblem, x: Any, w: Any, b: Any, out_layout: str) -> Runner:
    """Runs candidates on detached copies of the call's own tensors (``dy`` is synthetic)."""
    import torch

    dev, dtype = x.device, x.dtype

    def fresh(t: Any, grad: bool) -> Any:
        # one detached copy for every candidate: gradients are returned, never accumulated
        return None if t is None else t.detach().clone().requires_grad_(grad)

    inputs_of: dict[str, tuple[Any, ...]] = {}

    def prepare(fn: Callable, mode: str) -> Callable[[], tuple[Any, ...]]:
        if mode not in inputs_of:
            grad = mode == "train"
            inputs_of[mode] = (fresh(x, grad), fresh(w, grad), fresh(b, grad))
        xs, ws, bs = inputs_of[mode]
        if mode != "train":

            def forward() -> tuple[Any, ...]:
                with torch.inference_mode():
                    return (fn(xs, ws, bs),)

            return forward
        if "dy" not in inputs_of:
            dy_shape = shape_in(out_layout, problem.y_shape)
            inputs_of["dy"] = (torch.from_numpy(_synthetic(problem, dy_shape, 1)).to(dev, dtype),)
        dy = inputs_of["dy"][0]
        inputs = (xs, ws) if bs is None else (xs, ws, bs)

        def step() -> tuple[Any, ...]:
            y = fn(xs, ws, bs)
            return (y.detach(), *torch.autograd.grad(y, inputs, grad_outputs=dy))

        return step

    def sync(outputs: Any) -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)

    def to_numpy(outputs: Any) -> tuple[np.ndarray, ...]:
        return tuple(
            o.detach().float().cpu().numpy()
            if o.dtype in (torch.float16, torch.bfloat16)
            else o.detach().cpu().numpy()
            for o in outputs
        )

    return Runner(prepare, sync, to_numpy)


def torch_native(problem: ConvProblem) -> Callable:
    """sharedconv's own kernel as ``f(x, w, b)`` on PyTorch CPU tensors (float32/float64),
    differentiable: the tensors' memory is handed to the kernel as NumPy arrays, no copy
    (a non-contiguous input is made contiguous first), and its outputs come back the same way,
    in memory from the native output pool (resident, not fresh pages every step: the
    ``direct_pooled`` strategy). Threads: PyTorch's intra-op count."""
    import torch

    from ..backends import native_backend as native

    pool = native.output_pool()

    def arrays(*tensors: Any) -> list[Any]:
        return [None if t is None else t.detach().contiguous().numpy() for t in tensors]

    class NativeConv(torch.autograd.Function):
        @staticmethod
        def forward(ctx: Any, x: Any, w: Any, b: Any) -> Any:
            xs, ws, bs = arrays(x, w, b)
            ctx.save_for_backward(x, w)
            ctx.bias = b is not None
            y = native.forward(problem, xs, ws, bs, torch.get_num_threads(), pool=pool)
            return torch.from_numpy(y)

        @staticmethod
        def backward(ctx: Any, dy: Any) -> tuple[Any, ...]:
            x, w = ctx.saved_tensors
            xs, ws, dys = arrays(x, w, dy)
            grads = native.backward(
                problem, xs, ws, dys, ctx.bias, torch.get_num_threads(), pool=pool
            )
            dx, dw, *db = (torch.from_numpy(g) for g in grads)
            return dx, dw, (db[0] if db else None)

    def call(x: Any, w: Any, b: Any) -> Any:
        return NativeConv.apply(x, w, b)

    return call


def torch_candidates(
    problem: ConvProblem,
    device: str,
    mode: str,
    layouts: tuple[str, str],
    weights: Callable | None = None,
) -> tuple[dict[str, Any], dict[str, str]]:
    """What a layer on PyTorch tensors can run (the PyTorch layer, Keras on torch): PyTorch's
    strategies (``_core.candidates_for``) and, as ``native``, sharedconv's own kernel
    (``torch_native``: BCHW in, BCNHW out, permuted to and from the layer's ``layouts`` like
    any strategy), with the reasons for the others. ``weights``: see ``_core.wrap``."""
    import dataclasses

    from ..backends.registry import load_backend
    from ._core import NATIVE, NATIVE_RECORD, Candidate, candidates_for, wrap

    offered, refused = candidates_for(
        load_backend("torch"), torch_builders(problem), problem, device, mode, *layouts,
        torch_permute, weights=weights,
    )  # fmt: skip
    backend = load_backend(NATIVE_RECORD[0])
    strategy = backend.strategy(NATIVE_RECORD[1])
    why = backend.available() or backend.supports(problem, strategy, device, mode)
    if why:
        refused[NATIVE] = why
    else:
        fn = wrap(torch_native(problem), strategy, *layouts, torch_permute, weights)
        offered[NATIVE] = Candidate(dataclasses.replace(strategy, name=NATIVE), fn)
    return offered, refused


# --------------------------------------------------------------------------- jax


def jax_key(problem: ConvProblem, mode: str, platform: str, layout: str, precision: str) -> Key:
    import jax

    device = "cpu" if platform == "cpu" else str(jax.devices(platform)[0].device_kind)
    return Key(
        framework="jax",
        framework_version=f"{jax.__version__} precision={precision}",
        device=device,
        threads=len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else (os.cpu_count() or 1),
        machine=machine_id(),
        problem=problem.to_text(),
        mode=mode,
        layout=layout,
    )


def jax_precision(precision: str) -> Any:
    import jax

    return {"highest": jax.lax.Precision.HIGHEST, "default": jax.lax.Precision.DEFAULT}[precision]


def jax_builders(problem: ConvProblem, precision: str) -> dict[str, Callable]:
    import jax

    from ..backends.jax_backend import _builders

    return _builders(jax, problem, jax_precision(precision))


def jax_permute(a: Any, perm: tuple[int, ...]) -> Any:
    import jax.numpy as jnp

    return jnp.transpose(a, perm)


def jax_runner(
    problem: ConvProblem,
    x: Any,
    w: Any,
    b: Any,
    in_layout: str,
    out_layout: str,
    platform: str,
) -> Runner:
    """Runs candidates under ``jax.jit``; inputs that are tracers (the layer is being traced
    under ``jit``/``grad``/``vmap``) are replaced by synthetic arrays of the same shape. ``w``
    is whatever the candidates take (the filters, or the Keras layer's kernel): its shape is
    always known."""
    import jax
    import jax.numpy as jnp

    dev = jax.devices(platform)[0]
    dtype = jnp.dtype(problem.dtype)

    def concrete(a: Any, shape: tuple[int, ...], salt: int) -> Any:
        if a is None:
            return None
        if isinstance(a, jax.core.Tracer):
            a = _synthetic(problem, shape, salt)
        return jax.device_put(jnp.asarray(a, dtype=dtype), dev)

    xs = concrete(x, shape_in(in_layout, problem.x_shape), 2)
    ws, bs = concrete(w, tuple(w.shape), 3), concrete(b, (problem.N,), 4)

    def prepare(fn: Callable, mode: str) -> Callable[[], tuple[Any, ...]]:
        if mode != "train":
            compiled = jax.jit(fn).lower(xs, ws, bs).compile()
            return lambda: (compiled(xs, ws, bs),)
        dy_shape = shape_in(out_layout, problem.y_shape)
        dy = concrete(_synthetic(problem, dy_shape, 1), dy_shape, 1)

        from ..backends.jax_backend import train_step

        compiled = jax.jit(train_step(jax, fn)).lower(xs, ws, bs, dy).compile()
        return lambda: compiled(xs, ws, bs, dy)

    def sync(outputs: Any) -> None:
        jax.block_until_ready(outputs)

    def to_numpy(outputs: Any) -> tuple[np.ndarray, ...]:
        return tuple(
            np.asarray(jnp.asarray(o, jnp.float32) if o.dtype == jnp.bfloat16 else o)
            for o in outputs
        )

    return Runner(prepare, sync, to_numpy, compiled_ahead=True)  # compiled in prepare()


# --------------------------------------------------------------------------- tensorflow (Keras)


def tf_key(problem: ConvProblem, mode: str, device: str, layout: str) -> Key:
    import tensorflow as tf

    return Key(
        framework="tensorflow",
        framework_version=tf.__version__,
        device=device,
        threads=tf.config.threading.get_intra_op_parallelism_threads() or (os.cpu_count() or 1),
        machine=machine_id(),
        problem=problem.to_text(),
        mode=mode,
        layout=layout,
    )


def tf_builders(problem: ConvProblem) -> dict[str, Callable]:
    import tensorflow as tf

    from ..backends.tensorflow_backend import _builders

    return _builders(tf, problem)  # the "_xla" variants are absent: they compile their own graph


def tf_permute(a: Any, perm: tuple[int, ...]) -> Any:
    import tensorflow as tf

    return tf.transpose(a, perm)


def tf_runner(
    problem: ConvProblem,
    x: Any,
    w: Any,
    b: Any,
    in_layout: str,
    out_layout: str,
) -> Runner:
    """Runs candidates under ``tf.function``; symbolic inputs (Keras traces a training step)
    are replaced by synthetic arrays of the problem's shapes (``w``: as in :func:`jax_runner`)."""
    import tensorflow as tf

    dtype = tf.as_dtype(problem.dtype)

    def concrete(a: Any, shape: tuple[int, ...], salt: int) -> Any:
        if a is None:
            return None
        try:
            value = a.numpy()
        except (AttributeError, NotImplementedError, TypeError, ValueError):
            value = _synthetic(problem, shape, salt)
        return tf.cast(tf.constant(value), dtype)

    xs = concrete(x, shape_in(in_layout, problem.x_shape), 2)
    ws, bs = concrete(w, tuple(w.shape), 3), concrete(b, (problem.N,), 4)

    def prepare(fn: Callable, mode: str) -> Callable[[], tuple[Any, ...]]:
        if mode != "train":
            graph = tf.function(lambda x, w: fn(x, w, bs)).get_concrete_function(
                xs, ws
            )  # traced here
            return lambda: (graph(xs, ws),)
        dy = tf.cast(
            tf.constant(_synthetic(problem, shape_in(out_layout, problem.y_shape), 1)), dtype
        )

        @tf.function
        def step(x: Any, w: Any) -> tuple[Any, ...]:
            watched = [x, w] if bs is None else [x, w, bs]
            with tf.GradientTape() as tape:
                tape.watch(watched)
                y = fn(x, w, bs)
            return (y, *tape.gradient(y, watched, output_gradients=dy))

        traced = step.get_concrete_function(xs, ws)
        return lambda: tuple(traced(xs, ws))

    def sync(outputs: Any) -> None:
        return None  # eager TensorFlow returns finished tensors on CPU; .numpy() waits on GPU

    def to_numpy(outputs: Any) -> tuple[np.ndarray, ...]:
        return tuple(
            (tf.cast(o, tf.float32) if o.dtype == tf.bfloat16 else o).numpy() for o in outputs
        )

    return Runner(prepare, sync, to_numpy)
