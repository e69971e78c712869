"""The backend contract: what every adapter, built-in or third-party, implements.

A backend is a small object:

- ``name``, ``install_hint``, ``devices``
- ``available() -> str | None``: ``None`` when usable, else the reason with the install hint
  (never raises, never imports the framework when it can avoid it)
- ``versions() -> dict[str, str]``
- ``strategies``: a sequence of :class:`Strategy` descriptors. A backend with several
  strategies declares each once, its descriptor and its builder together, in a
  :class:`StrategyTable` (the built-ins all do); variants of a strategy (compiled, XLA,
  ``model.predict``) are descriptors with ``base`` and ``form``, never parsed from names
- ``configure(threads, device) -> dict``: called once per worker process before anything
  else, so the backend sets its thread pools before its framework starts; returns facts to
  record (the default does nothing)
- ``tf32``: set by the harness before ``configure``: whether float32 work may use TF32 tensor
  cores on a GPU (``Plan.tf32``, off by default). A backend that can use TF32 honours it in
  ``configure``/``prepare``; the harness then holds float32 outputs to TF32's bound and labels
  the verdict. A backend that cannot ignores it.
- optional: ``device_memory(call)``, the framework's own accounting of one call's peak memory
  on the case's device (GPU counters, an allocator's statistics, a compiler's memory plan), or
  None where it keeps none. The harness records it beside the process RSS on the CPU and
  checks both against the call's own outputs (docs/memory.md). ``"adds_to_rss": True`` in the
  answer says it counts a pool of the framework's own that a warm call's RSS cannot see, so
  the two add up (TensorFlow's oneDNN pool)
- ``prepare(problem, arrays, strategy, device, mode) -> Callable[[], outputs]``: moves the
  canonical NumPy arrays to the device in the strategy's input layout, builds / traces /
  compiles, and returns a zero-argument callable. Calling it runs one forward pass (or one
  forward and backward pass in train mode) and returns a tuple of framework arrays:
  ``(y,)`` in forward mode, ``(y, dx, dw)`` or ``(y, dx, dw, db)`` in train mode.
- ``synchronize(outputs)``: blocks until the device has finished computing ``outputs``
- ``to_numpy(outputs) -> tuple[np.ndarray, ...]``: host copies in the strategy's declared
  layouts (``y`` in ``output_layout``, ``dx`` in ``input_layout``, ``dw (N, KH, KW)``,
  ``db (N,)``). The harness turns them into the canonical layout with
  :func:`canonical_outputs`, so a layout declaration that does not match reality shows up as a
  shape or value mismatch rather than being hidden.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from .layouts import shape_in, to_canonical, validate_layout
from .problem import ConvProblem

Mode = Literal["forward", "train"]
MODES: tuple[str, ...] = ("forward", "train")
DEVICES: tuple[str, ...] = ("cpu", "cuda")

SupportsFn = Callable[[ConvProblem, str, str], "str | None"]


# The tags the harness and the layers act on, and what each changes. A strategy may carry
# other tags of its own (shown, never acted on).
TAGS: dict[str, str] = {
    "patches": "builds the K*K patch tensor: the memory estimate that guards a run against "
    "swapping adds it (forward, and again in train mode)",
    "fft": "transforms the input and the filters: the memory estimate adds the spectra",
    "elementwise": "accumulates per-tap products: the memory estimate adds one output-sized "
    "temporary",
    "unrolled": "one operation per channel, unrolled into the graph: the layers' autotune skips "
    "it on compiled frameworks above 32 channels (it compiles for minutes there)",
    "compiled": "compiles its own graph (torch.compile, XLA): the layers leave it out (a layer "
    "runs inside the user's own compiled function)",
    "conv": "calls the framework's convolution (descriptive)",
    "map": "maps a one-channel convolution over the channels (descriptive)",
    "graph": "TensorFlow graph function (descriptive)",
    "xla": "TensorFlow under jit_compile=True (descriptive)",
    "keras": "a Keras model (descriptive)",
    "predict": "timed through Keras' model.predict (descriptive)",
    "project-kernel": "sharedconv's own compiled kernel (descriptive)",
}


def supports_everything(problem: ConvProblem, device: str, mode: str) -> str | None:
    return None


@dataclass(frozen=True)
class Strategy:
    """One way of computing the operation, described without running it.

    ``supports(problem, device, mode)`` returns ``None`` or the reason it cannot compute
    that problem correctly; the reason is shown to users, so make it specific.
    ``timed`` says what one call of the prepared callable does, for the record of what is
    inside the timed region.
    """

    name: str
    description: str
    input_layout: str = "BCHW"
    output_layout: str = "BCNHW"
    differentiable: bool = True
    seed_option: int | None = None
    timed: str = ""
    supports_fn: SupportsFn = field(default=supports_everything, repr=False, compare=False)
    tags: tuple[str, ...] = ()  # what they mean, and which the harness acts on: TAGS
    # A variant of another strategy of the same backend: ``base`` names the strategy whose
    # builder it runs, ``form`` how it runs it (e.g. "compiled": torch.compile, "xla":
    # jit_compile=True, "predict": Keras' model.predict). Backends branch on these fields,
    # never on the name.
    base: str = ""
    form: str = ""
    # Names this strategy had before (stored runs are read under the current name, and
    # --strategies takes the old one): a rename is one edit, where the strategy is declared.
    formerly: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.name or not self.name.replace("_", "").replace("-", "").isalnum():
            raise ValueError(
                f"strategy name must be letters, digits, '_' or '-', got {self.name!r}"
            )
        validate_layout(self.input_layout, "BCHW", f"strategy {self.name!r} input_layout")
        validate_layout(self.output_layout, "BCNHW", f"strategy {self.name!r} output_layout")
        if self.seed_option not in (None, 1, 2, 3):
            raise ValueError(f"strategy {self.name!r}: seed_option must be 1, 2, 3 or None")
        if bool(self.base) != bool(self.form):
            raise ValueError(f"strategy {self.name!r}: a variant names both its base and its form")

    @property
    def builder(self) -> str:
        """The name of the builder this strategy runs: its base's for a variant."""
        return self.base or self.name

    def supports(self, problem: ConvProblem, device: str, mode: str) -> str | None:
        if mode == "train" and not self.differentiable:
            return f"{self.name} is not differentiable (forward only)"
        return self.supports_fn(problem, device, mode)

    def describe(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_layout": self.input_layout,
            "output_layout": self.output_layout,
            "differentiable": self.differentiable,
            "seed_option": self.seed_option,
            "timed": self.timed,
            "tags": list(self.tags),
            "base": self.base,
            "form": self.form,
            "formerly": list(self.formerly),
        }


Builder = Callable[..., Any]


class StrategyTable:
    """A backend's strategies, each declared once, its descriptor and its builder together.

    A builder is ``build(kit, x, w, b) -> y``: ``kit`` is whatever per-problem object the
    backend makes once in ``prepare`` (the problem's sizes, the framework's modules, shared
    helpers), ``x, w, b`` the framework's arrays in the strategy's declared layouts::

        TABLE = StrategyTable()

        @TABLE.strategy("fold", "channels folded into the batch", timed="...")
        def fold(k, x, w, b):
            return ...

        TABLE.variant("fold", form="compiled", name="compiled_fold", description="...")

    ``TABLE.strategies`` is the backend's ``strategies``; ``TABLE.bind(strategy, kit)`` the
    callable ``f(x, w, b)`` a strategy (or its variant) runs. Adding a strategy is one
    decorated function; a variant is one line that names its base and its form.
    """

    def __init__(self) -> None:
        self._plain: list[Strategy] = []
        self._variants: list[Strategy] = []
        self._builders: dict[str, Builder] = {}

    def strategy(self, name: str, description: str, **fields: Any) -> Callable[[Builder], Builder]:
        """Declare a strategy with the builder it decorates."""

        def register(build: Builder) -> Builder:
            self._check_new(name)
            self._plain.append(Strategy(name, description, **fields))
            self._builders[name] = build
            return build

        return register

    def variant(
        self, base: str, *, form: str, name: str, description: str, **fields: Any
    ) -> Strategy:
        """Declare ``name``: the builder of ``base`` run in ``form``. Fields not given are
        the base's (layouts, seed option, differentiability, support, tags); a renamed base's
        old names carry over (``compiled_fold`` was ``compiled_<old>`` when ``fold`` was
        ``<old>``)."""
        if base not in self._builders:
            raise ValueError(f"variant {name!r}: no strategy {base!r} to build on")
        self._check_new(name)
        of = next(s for s in self._plain if s.name == base)
        formerly = tuple(name.replace(base, old, 1) for old in of.formerly)
        variant = replace(
            of, name=name, description=description, base=base, form=form, formerly=formerly,
            **fields,
        )  # fmt: skip
        self._variants.append(variant)
        return variant

    def _check_new(self, name: str) -> None:
        if any(name == s.name or name in s.formerly for s in self.strategies):
            raise ValueError(f"strategy {name!r} is declared twice (or was another's name)")

    @property
    def strategies(self) -> tuple[Strategy, ...]:
        return (*self._plain, *self._variants)

    def bind(self, strategy: Strategy | str, kit: Any) -> Callable[..., Any]:
        """The strategy's builder with ``kit`` bound: a plain function ``f(x, w, b)`` (plain,
        so ``torch.compile``, ``jax.jit`` and ``tf.function`` all take it)."""
        name = strategy.builder if isinstance(strategy, Strategy) else strategy
        build = self.builder_of(name)

        def call(x: Any, w: Any, b: Any) -> Any:
            return build(kit, x, w, b)

        call.__name__ = call.__qualname__ = name
        return call

    def builder_of(self, strategy: Strategy | str) -> Builder:
        """The builder itself, for a backend whose builders are not ``f(kit, x, w, b)``
        (Keras': one model body per option)."""
        return self._builders[strategy.builder if isinstance(strategy, Strategy) else strategy]

    def bind_all(self, kit: Any) -> dict[str, Callable[..., Any]]:
        """Every builder (not the variants: they run a base's) with ``kit`` bound, by name."""
        return {name: self.bind(name, kit) for name in self._builders}


class Backend:
    """The base class every backend subclasses (the registry refuses anything else): the
    contract's defaults live here, and nothing is patched onto a plugin at load time."""

    name: str = ""
    install_hint: str = ""
    devices: tuple[str, ...] = ("cpu",)
    strategies: Sequence[Strategy] = ()
    tf32: bool = False  # set by the harness before configure(); see the module docstring

    def available(self) -> str | None:
        return None

    def versions(self) -> dict[str, str]:
        return {}

    def configure(self, threads: int, device: str) -> dict[str, Any]:
        return {}

    def strategy(self, name: str) -> Strategy:
        """The strategy called ``name`` now, or formerly."""
        for s in self.strategies:
            if s.name == name:
                return s
        for s in self.strategies:
            if name in s.formerly:
                return s
        valid = ", ".join(s.name for s in self.strategies)
        raise KeyError(f"backend {self.name!r} has no strategy {name!r}; valid: {valid}")

    def supports(
        self, problem: ConvProblem, strategy: Strategy, device: str, mode: str
    ) -> str | None:
        """Device check plus the strategy's own answer."""
        if device not in self.devices:
            return f"{self.name} runs on {', '.join(self.devices)}, not {device}"
        return strategy.supports(problem, device, mode)

    def prepare(
        self,
        problem: ConvProblem,
        arrays: dict[str, np.ndarray],
        strategy: Strategy,
        device: str,
        mode: str,
    ) -> Callable[[], tuple[Any, ...]]:
        raise NotImplementedError

    def synchronize(self, outputs: tuple[Any, ...]) -> None:
        return None

    def device_memory(self, call: Callable[[], tuple[Any, ...]]) -> dict[str, Any] | None:
        """Optional: run ``call`` once and return ``{"peak_bytes": ..., "method": ...}`` from
        the framework's own accounting on the case's device; ``None`` when it keeps none (the
        harness then has the process RSS on the CPU, and nothing on a GPU)."""
        return None

    def to_numpy(self, outputs: tuple[Any, ...]) -> tuple[np.ndarray, ...]:
        return tuple(np.asarray(o) for o in outputs)


def output_names(problem: ConvProblem, mode: str) -> tuple[str, ...]:
    """The names of a prepared call's outputs, in order."""
    if mode != "train":
        return ("y",)
    return ("y", "dx", "dw", "db") if problem.bias else ("y", "dx", "dw")


class OutputShapeError(ValueError):
    """A prepared call returned the wrong number of outputs, or (strict) a wrong shape."""


def canonical_outputs(
    strategy: Strategy,
    problem: ConvProblem,
    mode: str,
    arrays: Sequence[Any],
    strict: bool = False,
) -> dict[str, np.ndarray]:
    """A prepared call's host outputs by name (``y``, ``dx``, ``dw``, ``db``), ``y`` and ``dx``
    transposed from the strategy's declared layouts to the canonical ones.

    The one home of this step for the harness's workers, the pytest plugin and the conformance
    kit. A wrong count raises :class:`OutputShapeError`; so does a shape other than the declared
    layout's with ``strict`` (the kit's check, naming the layout). Otherwise an output of the
    wrong shape is passed on untransposed, and the oracle comparison reports the mismatch."""
    names = output_names(problem, mode)
    if len(arrays) != len(names):
        raise OutputShapeError(
            f"returned {len(arrays)} outputs in {mode} mode, expected {len(names)} "
            f"({', '.join(names)})"
        )
    layouts = {
        "y": (strategy.output_layout, problem.y_shape),
        "dx": (strategy.input_layout, problem.x_shape),
    }
    out = {}
    for name, a in zip(names, arrays, strict=True):
        a = np.asarray(a)
        if name in layouts:
            layout, canonical_shape = layouts[name]
            expected = shape_in(layout, canonical_shape)
            if a.shape == expected:
                a = to_canonical(a, layout)
            elif strict:
                raise OutputShapeError(
                    f"{name} has shape {a.shape}, but the layout {layout!r} means {expected}"
                )
        out[name] = a
    return out
