"""The layer call that runs a measured strategy in a user's model: how an answer of
``sharedconv run``/``recommend`` ("use torch/fold") becomes a line of code. Framework-free
(the harness's parent process asks it without importing any framework)."""

from __future__ import annotations

from ..backends.problem import ConvProblem
from ._core import NATIVE, NATIVE_RECORDS, layer_strategies

PREDICT = "_predict"  # the Keras backends' strategies through model.predict: the same op


def _pair(value: tuple[int, int]) -> object:
    return value[0] if value[0] == value[1] else value


def _arguments(problem: ConvProblem, strategy: str, style: str) -> str:
    """The layer's arguments for ``problem`` in ``style``: "torch" (``SharedConv2d``),
    "keras" (``SharedConv2D``) or "jax" (``shared_conv2d``'s keywords)."""
    kh, kw = problem.kernel
    args = [] if style == "jax" else [str(problem.N), str(_pair((kh, kw)))]
    names = {"keras": ("strides", "dilation_rate", "use_bias")}.get(
        style, ("stride", "dilation", "bias")
    )
    if problem.stride != (1, 1):
        args.append(f"{names[0]}={_pair(problem.stride)}")
    padding = problem.padding
    if padding != "valid":
        args.append(
            f'padding="{padding}"' if isinstance(padding, str) else f"padding={_pair(padding)}"
        )
    if problem.dilation != (1, 1):
        args.append(f"{names[1]}={_pair(problem.dilation)}")
    if not problem.bias and style != "jax":  # the function takes b=None instead
        args.append(f"{names[2]}=False")
    args.append(f'strategy="{strategy}"')
    return ", ".join(args)


def in_your_model(backend: str, strategy: str, problem: ConvProblem) -> str | None:
    """The layer call that runs ``backend/strategy`` for ``problem``, or None where no layer
    runs it (a strategy that compiles a graph of its own, the seed's Keras formulations, a
    plugin's). The Keras layer runs its backend framework's strategies, so TensorFlow's are
    Keras-on-TensorFlow lines; Keras' padding is "valid" or "same" only, so an explicit
    padding has no Keras line."""
    keras_ok = isinstance(problem.padding, str)

    def keras(framework: str, name: str) -> str:
        return (
            f"sharedconv.layers.keras.SharedConv2D({_arguments(problem, name, 'keras')}) "
            f"with KERAS_BACKEND={framework}"
        )

    if (backend, strategy) in NATIVE_RECORDS:
        line = f"sharedconv.layers.torch.SharedConv2d({_arguments(problem, NATIVE, 'torch')})"
        return line + (f", or {keras('torch', NATIVE)}" if keras_ok else "") + " (on the CPU)"
    if backend == "torch" and strategy in layer_strategies("torch"):
        return f"sharedconv.layers.torch.SharedConv2d({_arguments(problem, strategy, 'torch')})"
    if backend == "jax" and strategy in layer_strategies("jax"):
        args = _arguments(problem, strategy, "jax")
        return (
            f"sharedconv.layers.jax.shared_conv2d(x, w, {'b' if problem.bias else 'None'}, {args})"
        )
    if backend == "tensorflow" and keras_ok and strategy in layer_strategies("tensorflow"):
        return keras("tensorflow", strategy)
    if backend.startswith("keras-") and keras_ok:
        framework, name = backend.removeprefix("keras-"), strategy.removesuffix(PREDICT)
        if framework in ("torch", "jax", "tensorflow") and name in layer_strategies(framework):
            return keras(framework, name)
    return None
