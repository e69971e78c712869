#!/usr/bin/env python3
"""The drop-in layers against every strategy of their framework, side by side in one process.

    python scripts/bench_layers.py --out docs/layers.md            # CPU, about 25 minutes on 2 cores
    python scripts/bench_layers.py --device cuda --frameworks torch,jax --json OUT.json
    python scripts/bench_layers.py --shapes "" --json OUT.json     # the dispatch overhead alone

For each framework (one child process each: torch, jax, keras-tensorflow, keras-jax,
keras-torch), each shape and mode (forward; train = forward and backward):

1. a layer with ``strategy="auto"`` is built and called once on a fresh decision cache: the
   tuning time and the pick are recorded;
2. the same call through the auto layer and through a layer pinned to each strategy the
   framework offers is timed with the harness's timer (``harness.timing.steady_state``), in
   ``--rounds`` rounds, each round in a new random order, so drift hits every candidate alike;
   a candidate's time is the median of its round medians. A candidate whose first call is
   over 10x the fastest's is timed by that call alone (marked);
3. auto's time over the best strategy's time is the headline ratio (goal: within 5%);
4. a paired comparison: auto, the best and auto's pick in alternating blocks (PAIRED_S).

The per-call dispatch overhead is measured on a 1-element problem: the layer's call against
the chosen strategy's function called directly, in alternating blocks of 20 calls; the
overhead is the median of the per-cycle differences.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FRAMEWORKS = ["torch", "jax", "keras-tensorflow", "keras-jax", "keras-torch"]
SHAPES = [
    "B=4,C=3,H=64,W=64,N=16,K=3",  # few channels, small image
    "B=4,C=64,H=32,W=32,N=8,K=3",  # many channels, small image
    "B=4,C=16,H=64,W=64,N=16,K=5",  # the channels suite's middle
    "B=2,C=100,H=64,W=64,N=16,K=7",  # the seed's 100 channels, K=7
    "B=2,C=3,H=200,W=200,N=20,K=5",  # the seed's image (B=2 of its 10)
    "B=8,C=128,H=16,W=16,N=4,K=3",  # many channels, tiny image
    "B=1,C=32,H=128,W=128,N=8,K=5,padding=same",  # large image
    "B=4,C=8,H=48,W=48,N=32,K=7,stride=2",  # many filters, strided
]
NOT_A_CONTENDER = 10.0
# The paired comparison after the rounds: auto, the best pinned strategy and auto's pick (when
# another) in alternating blocks of about BLOCK_S each, a new random order every cycle, for
# PAIRED_S seconds (at least MIN_CYCLES cycles); drift that lasts a cycle cancels in each
# cycle's ratio (harness.stats.paired_ratio: median of the per-cycle ratios, bootstrap CI).
PAIRED_S = 2.0
BLOCK_S = 0.01
MIN_CYCLES = 12
MAX_CYCLES = 400
# a second layer pinned to the row's best strategy, in the paired comparison: the same strategy
# against itself, the row's own noise floor
CONTROL = "control"
WARM_BELOW_S = 0.05  # a block of a call shorter than this starts with one untimed call


# --------------------------------------------------------------------------- child


def harness_median(call, sync, budget: float) -> float:
    """The median seconds per call from the harness's own steady-state timer (a round's
    measurement of one layer)."""
    from sharedconv.harness.timing import steady_state

    record = steady_state(
        call,
        sync,
        {
            "budget": budget,
            "warmup": min(0.05, budget / 4),
            "warmup_calls": 1,
            "min_samples": 3,
            "max_samples": 50,
            "precision": 0.03,
        },
    )
    return float(record["stats"]["median"])


def child(
    framework: str, device: str, shapes: list[str], modes: list[str], rounds: int, budget: float
) -> None:
    if framework.startswith("keras-"):
        os.environ["KERAS_BACKEND"] = framework.removeprefix("keras-")
    os.environ["SHAREDCONV_CACHE_DIR"] = tempfile.mkdtemp(prefix="bench-layers-")
    from sharedconv.backends.problem import make_inputs, parse_problem

    maker = {"torch": TorchCalls, "jax": JaxCalls}.get(framework, KerasCalls)(device)
    rows = []
    for text in filter(None, shapes):  # --shapes "": the dispatch overhead alone
        problem = parse_problem(text)
        for mode in modes:
            arrays = make_inputs(problem, seed=0, mode=mode)
            t0 = time.perf_counter()
            auto_call, choice = maker.auto(problem, arrays, mode)
            first = time.perf_counter() - t0
            calls = {"auto": auto_call}
            refused = {}
            for name in maker.strategies():
                try:
                    calls[name] = maker.pinned(problem, arrays, mode, name)
                except Exception as e:  # a strategy that cannot run this problem
                    refused[name] = f"{e.__class__.__name__}: {str(e).splitlines()[0][:120]}"
            one = {}
            for name, call in list(calls.items()):
                try:
                    maker.sync(call())
                    t = time.perf_counter()
                    maker.sync(call())
                    one[name] = time.perf_counter() - t
                except Exception as e:
                    refused[name] = f"{e.__class__.__name__}: {str(e).splitlines()[0][:120]}"
                    calls.pop(name)
            fastest = min(one.values())
            times: dict[str, list[float]] = {n: [] for n in calls}
            single = {n for n in calls if n != "auto" and one[n] > NOT_A_CONTENDER * fastest}
            for _ in range(rounds):
                order = [n for n in calls if n not in single]
                random.shuffle(order)
                for name in order:
                    times[name].append(harness_median(calls[name], maker.sync, budget))
            medians = {n: (statistics.median(v) if v else one[n]) for n, v in times.items()}
            strategies = {n: m for n, m in medians.items() if n != "auto"}
            best = min(strategies, key=strategies.get)
            # the row's noise floor: a second layer pinned to the best, paired with the first
            control = maker.pinned(problem, arrays, mode, best)
            maker.sync(control())
            calls[CONTROL], one[CONTROL] = control, one[best]
            paired = paired_comparison(calls, maker.sync, one, best, choice.strategy, single)
            calls.pop(CONTROL)
            rows.append(
                {
                    "framework": framework,
                    "device": device,
                    "problem": text,
                    "mode": mode,
                    "pick": choice.strategy,
                    "source": choice.source,
                    "tuning_s": choice.tuning_s,
                    "first_call_s": first,
                    "auto_s": medians["auto"],
                    "best": best,
                    "best_s": strategies[best],
                    "ratio": medians["auto"] / strategies[best],
                    "pick_s": strategies.get(choice.strategy),
                    "medians": medians,
                    "single_call": sorted(single),
                    "refused": refused,
                    "rounds": rounds,
                    "trials": [[t.strategy, t.median_s, t.note] for t in choice.trials],
                    "rounds_s": times,
                    "paired": paired,
                }
            )
            print("BENCH-ROW " + json.dumps(rows[-1]), flush=True)  # kept if the child dies later
            print(
                f"# {framework} {text} {mode}: auto={choice.strategy} {medians['auto'] * 1e3:.2f} ms, best {best} {strategies[best] * 1e3:.2f} ms, ratio {rows[-1]['ratio']:.3f}",
                file=sys.stderr,
                flush=True,
            )
            maker.release()
    overhead = maker.overhead()
    print(
        "BENCH-LAYERS "
        + json.dumps({"rows": rows, "overhead": overhead, "versions": maker.versions()}),
        flush=True,
    )


def alternating_blocks(
    calls: dict, sync, sizes: dict, seconds: float, min_cycles: int, max_cycles: int,
    warm: frozenset = frozenset(), seed: int = 1,
) -> dict[str, list[float]]:  # fmt: skip
    """Per-call seconds of each call in alternating blocks of ``sizes[name]`` calls, a new
    random order every cycle, for ``seconds`` (at least ``min_cycles``, at most ``max_cycles``
    cycles); a name in ``warm`` starts each of its blocks with one untimed call. The i-th
    values of two calls come from one cycle, so drift that lasts a cycle cancels between them."""
    from sharedconv.harness.timing import timed_block

    per_call: dict[str, list[float]] = {n: [] for n in calls}
    rng = random.Random(seed)
    start = time.perf_counter()
    cycles = 0
    while cycles < max_cycles and (time.perf_counter() - start < seconds or cycles < min_cycles):
        order = list(calls)
        rng.shuffle(order)
        for n in order:
            if n in warm:
                sync(calls[n]())  # untimed: the caches hold this call's data again
            per_call[n].append(timed_block(calls[n], sync, sizes[n], time.perf_counter) / sizes[n])
        cycles += 1
    return per_call


def paired_comparison(calls, sync, one, best, pick, single) -> dict:
    """auto / best and pick / best from alternating blocks (see PAIRED_S)."""
    from sharedconv.harness.stats import paired_ratio

    names = ["auto", best] + (
        [pick] if pick != best and pick in calls and pick not in single else []
    )
    names += [CONTROL] if CONTROL in calls else []
    start = time.perf_counter()
    per_call = alternating_blocks(
        {n: calls[n] for n in names},
        sync,
        {n: max(1, round(BLOCK_S / max(one[n], 1e-9))) for n in names},
        PAIRED_S,
        MIN_CYCLES,
        MAX_CYCLES,
        warm=frozenset(n for n in names if one[n] < WARM_BELOW_S),
    )
    return {
        "cycles": len(per_call["auto"]),
        "seconds": time.perf_counter() - start,
        "auto_best": list(paired_ratio(per_call["auto"], per_call[best])),
        "pick_best": list(paired_ratio(per_call[pick], per_call[best]))
        if pick in per_call and pick != best
        else None,
        "control_best": list(paired_ratio(per_call[CONTROL], per_call[best]))
        if CONTROL in per_call
        else None,
    }


def _interleaved_overhead(
    layer_call, direct_call, sync, seconds: float = 4.0, block: int = 20, others=None
) -> dict:
    """Per-call seconds of the layer and of its strategy called directly, in alternating blocks
    of ``block`` calls for ``seconds`` (:func:`alternating_blocks`); the overhead is the median
    of the per-cycle differences (paired: drift that lasts a cycle cancels; the fastest block
    of each, timeit's rule, moved by more than the overhead between runs here). ``others``:
    more calls in the same cycles; ``minus[name]`` is the median per-cycle difference of the
    layer over each, ``over_direct[name]`` each one's over the direct call."""
    calls = {"layer": layer_call, "direct": direct_call, **(others or {})}
    for _ in range(50):
        for call in calls.values():
            sync(call())
    t = alternating_blocks(
        calls,
        sync,
        {n: block for n in calls},
        seconds,
        min_cycles=20,
        max_cycles=10**6,
        seed=2,
    )

    def diff(a: list[float], b: list[float]) -> float:
        return statistics.median(x - y for x, y in zip(a, b, strict=True))

    a, b = t["layer"], t["direct"]
    return {
        "layer_s": statistics.median(a),
        "direct_s": statistics.median(b),
        "overhead_s": diff(a, b),
        "fastest_s": [min(a), min(b)],
        "blocks": len(a),
        "minus": {n: diff(a, t[n]) for n in others or {}},
        "over_direct": {n: diff(t[n], b) for n in others or {}},
    }


class RowInputs:
    """Inputs made once per row and read by every layer of it. With a copy per layer, two
    Keras-on-torch layers pinned to ``native`` (B=2,C=100,64x64,N=16,K=7 train, 2026-12-08)
    differed by 1.4-3.0% paired, consistently: where the inputs lie moves a memory-bound step
    by that much, and that is not the layer's doing. (The PyTorch rows share the NumPy
    arrays' memory as they are.)"""

    _row: tuple = (None, None)

    def once(self, problem, mode, make):
        """``make()``, or what it gave for this row (problem and mode) already."""
        key = (problem.to_text(), mode)
        if self._row[0] != key:
            self._row = (key, make())
        return self._row[1]

    def forget_row(self) -> None:
        self._row = (None, None)


class TorchCalls:
    def __init__(self, device: str) -> None:
        import torch

        self.torch = torch
        self.dev = torch.device(device)

    def versions(self) -> dict:
        return {"torch": self.torch.__version__, "threads": self.torch.get_num_threads()}

    def strategies(self) -> list[str]:
        from sharedconv.layers.torch import strategies

        return strategies()

    def _layer(self, problem, arrays, strategy):
        from sharedconv.layers.torch import SharedConv2d

        torch = self.torch
        layer = SharedConv2d(
            problem.N,
            problem.kernel,
            problem.stride,
            problem.padding,
            problem.dilation,
            problem.bias,
            strategy,
            device=self.dev,
        )
        with torch.no_grad():
            layer.weight.copy_(torch.from_numpy(arrays["w"]))
            if problem.bias:
                layer.bias.copy_(torch.from_numpy(arrays["b"]))
        return layer

    def _call(self, layer, arrays, mode):
        torch = self.torch
        x = torch.from_numpy(arrays["x"]).to(self.dev)
        if mode == "forward":

            def forward():
                with torch.no_grad():
                    return layer(x)

            return forward
        x.requires_grad_(True)
        dy = torch.from_numpy(arrays["dy"]).to(self.dev)
        params = [x, *layer.parameters()]

        def step():
            y = layer(x)
            return y, torch.autograd.grad(y, params, dy)

        return step

    def auto(self, problem, arrays, mode):
        layer = self._layer(problem, arrays, "auto")
        call = self._call(layer, arrays, mode)
        self.sync(call())
        return call, layer.choice

    def pinned(self, problem, arrays, mode, name):
        return self._call(self._layer(problem, arrays, name), arrays, mode)

    def sync(self, out) -> None:
        if self.dev.type == "cuda":
            self.torch.cuda.synchronize()

    def release(self) -> None:
        if self.dev.type == "cuda":
            self.torch.cuda.empty_cache()

    def overhead(self) -> dict:
        from sharedconv.backends.problem import make_inputs, parse_problem

        torch = self.torch
        p = parse_problem("B=1,C=1,H=1,W=1,N=1,K=1")
        arrays = make_inputs(p)
        layer = self._layer(
            p, arrays, "fold"
        )  # the per-call path of a pinned and an auto layer is one
        x = torch.from_numpy(arrays["x"]).to(self.dev)
        with torch.no_grad():
            layer(x)
        fn = next(iter(layer._selector.memo.values()))[1]

        def via_layer():
            with torch.no_grad():
                return layer(x)

        def direct():
            with torch.no_grad():
                return fn(x, layer.weight, layer.bias)

        return {
            **_interleaved_overhead(via_layer, direct, self.sync),
            "strategy": layer.choice.strategy,
            "note": "eager: the memo lookup runs on every call",
        }


class JaxCalls(RowInputs):
    def __init__(self, device: str) -> None:
        import jax

        self.jax = jax
        self.platform = "cpu" if device == "cpu" else "gpu"

    def versions(self) -> dict:
        return {"jax": self.jax.__version__}

    def strategies(self) -> list[str]:
        from sharedconv.layers.jax import strategies

        return strategies()

    def _build(self, problem, arrays, mode, strategy):
        import jax
        import jax.numpy as jnp

        from sharedconv.layers.jax import shared_conv2d

        dev = jax.devices(self.platform)[0]
        made = self.once(
            problem,
            mode,
            lambda: {n: None if a is None else jax.device_put(jnp.asarray(a), dev)
                     for n, a in arrays.items()},
        )  # fmt: skip
        x, w, b = made["x"], made["w"], made.get("b") if problem.bias else None
        kw = dict(
            stride=problem.stride,
            padding=problem.padding,
            dilation=problem.dilation,
            strategy=strategy,
            mode=mode,
        )
        if mode == "forward":
            f = jax.jit(lambda x, w, b: shared_conv2d(x, w, b, **kw))
            return lambda: f(x, w, b)
        dy = made["dy"]

        @jax.jit
        def step(x, w, b, dy):  # y is returned: a training step uses it (XLA would drop it)
            y, pull = jax.vjp(lambda x, w, b: shared_conv2d(x, w, b, **kw), x, w, b)
            return y, pull(dy)

        return lambda: step(x, w, b, dy)

    def auto(self, problem, arrays, mode):
        from sharedconv.layers.jax import last_choice

        call = self._build(problem, arrays, mode, "auto")
        self.sync(call())
        return call, last_choice()

    def pinned(self, problem, arrays, mode, name):
        return self._build(problem, arrays, mode, name)

    def sync(self, out) -> None:
        self.jax.block_until_ready(out)

    def release(self) -> None:
        self.forget_row()
        self.jax.clear_caches()

    def overhead(self) -> dict:
        import jax.numpy as jnp

        from sharedconv.layers import jax as L

        x, w, b = jnp.ones((1, 1, 1, 1)), jnp.ones((1, 1, 1)), jnp.ones((1,))
        L.shared_conv2d(x, w, b, mode="forward", strategy="fold")
        memo = L._selector("fold", None, None).memo
        fn = next(v for k, v in memo.items() if len(v) == 3 and k[0] == (1, 1, 1, 1))[
            1
        ]  # this call's entry
        r = _interleaved_overhead(
            lambda: L.shared_conv2d(x, w, b, mode="forward", strategy="fold"),
            lambda: fn(x, w, b),
            self.sync,
        )
        return {
            **r,
            "strategy": "fold",
            "note": "un-jitted calls; under jax.jit the choice is made once, at trace time, and costs nothing per call",
        }


class KerasCalls(RowInputs):
    """Keras' default data format (channels_last), the call path Keras itself uses."""

    def __init__(self, device: str) -> None:
        import keras

        self.keras = keras
        self.backend = keras.backend.backend()

    def versions(self) -> dict:
        return {"keras": self.keras.__version__, "backend": self.backend}

    def strategies(self) -> list[str]:
        from sharedconv.layers.keras import strategies

        return strategies()

    def _inputs(self, problem, arrays, mode):
        """The row's ``x`` (BHWC) and ``dy`` (BHWCN, train) as the backend's tensors, one copy
        per row (:class:`RowInputs`)."""

        def make():
            import numpy as np
            from sharedconv.backends.layouts import from_canonical

            x = np.ascontiguousarray(from_canonical(arrays["x"], "BHWC"))
            dy = (
                np.ascontiguousarray(from_canonical(arrays["dy"], "BHWCN"))
                if mode == "train"
                else None
            )
            if self.backend == "torch":
                import torch

                x = torch.as_tensor(x).requires_grad_(mode == "train")
                return x, None if dy is None else torch.as_tensor(dy)
            if self.backend == "jax":
                import jax.numpy as jnp

                return jnp.asarray(x), None if dy is None else jnp.asarray(dy)
            import tensorflow as tf

            return tf.constant(x), None if dy is None else tf.constant(dy)

        return self.once(problem, mode, make)

    def _build(self, problem, arrays, mode, strategy):
        import numpy as np

        from sharedconv.layers.keras import SharedConv2D

        pad = problem.padding if isinstance(problem.padding, str) else "valid"
        layer = SharedConv2D(
            problem.N,
            problem.kernel,
            problem.stride,
            pad,
            problem.dilation,
            problem.bias,
            strategy=strategy,
        )
        x, dy = self._inputs(problem, arrays, mode)
        layer.build(x.shape)
        layer.kernel.assign(np.transpose(arrays["w"], (1, 2, 0))[:, :, None, :])
        if problem.bias:
            layer.bias.assign(arrays["b"])
        training = mode == "train"
        if self.backend == "torch":
            import torch

            if not training:

                def forward():
                    with torch.no_grad():
                        return layer(x)

                return forward, layer
            params = [x, *(v.value for v in layer.trainable_variables)]

            def step():
                y = layer(x, training=True)
                return y, torch.autograd.grad(y, params, dy)

            return step, layer
        if self.backend == "jax":
            import jax

            values = [v.value for v in layer.trainable_variables]

            def apply(values, x):
                return layer.stateless_call(values, [], x, training=training)[0]

            if not training:
                f = jax.jit(apply)
                return (lambda: f(values, x)), layer

            def vjp_step(values, x, dy):  # y returned too, as a training step uses it
                y, pull = jax.vjp(apply, values, x)
                return y, pull(dy)

            step = jax.jit(vjp_step)
            return (lambda: step(values, x, dy)), layer
        import tensorflow as tf

        if not training:
            f = tf.function(lambda x: layer(x))
            return (lambda: f(x)), layer

        @tf.function
        def step(x, dy):
            with tf.GradientTape() as tape:
                tape.watch(x)
                y = layer(x, training=True)
            # y is returned too: a training step uses it (the graph would prune it otherwise)
            return y, tape.gradient(y, [x, *layer.trainable_variables], output_gradients=dy)

        return (lambda: step(x, dy)), layer

    def auto(self, problem, arrays, mode):
        call, layer = self._build(problem, arrays, mode, "auto")
        self.sync(call())
        return call, layer.choice

    def pinned(self, problem, arrays, mode, name):
        return self._build(problem, arrays, mode, name)[0]

    def sync(self, out) -> None:
        if self.backend == "jax":
            import jax

            jax.block_until_ready(out)
        elif self.backend == "torch":
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
        # TensorFlow on CPU returns finished tensors

    def release(self) -> None:
        self.forget_row()
        self.keras.utils.clear_session()

    def overhead(self) -> dict:
        import numpy as np

        from sharedconv.layers.keras import SharedConv2D

        keras = self.keras
        ops = keras.ops
        layer = SharedConv2D(1, 1, strategy="fold")  # the per-call path of pinned and auto is one
        x = ops.convert_to_tensor(np.ones((1, 1, 1, 1), "float32"))
        layer(x)
        fn = next(iter(layer._selector.memo.values()))[1]

        class Direct(keras.layers.Layer):
            """The same strategy function (which makes the filters from the kernel) on the
            same tensors (the variables' values), without the choice."""

            def call(self, x):
                return fn(x, layer.kernel.value, layer.bias.value)

        class DirectTraining(Direct):
            """The same, with a ``training`` argument as the layer's call has (Keras resolves
            it on every call)."""

            def call(self, x, training=None):
                return super().call(x)

        direct, with_training = Direct(), DirectTraining()
        direct(x)
        with_training(x)
        r = _interleaved_overhead(
            lambda: layer(x),
            lambda: direct(x),
            self.sync,
            others={"same_signature": lambda: with_training(x)},
        )
        like, arg = r["minus"]["same_signature"], r["over_direct"]["same_signature"]
        return {
            **r,
            "training_arg_s": arg,
            "same_signature_s": like,
            "strategy": layer.choice.strategy,
            "note": "eager calls, all through Keras' Layer.__call__, in the same cycles; of the "
            f"overhead, Keras' own handling of a `training` argument: {arg * 1e6:.1f} µs (the "
            "direct layer with one, against it without; the layer needs it: it is how Keras tells "
            "a layer that a step trains, and its public API has no other); the layer over that direct layer with a "
            f"`training` argument: {like * 1e6:.1f} µs; compiled calls (fit, tf.function, jit) "
            "choose at trace time",
        }


# --------------------------------------------------------------------------- parent


def run_children(args, on_progress=None) -> dict:
    from sharedconv.harness import allocators

    out = {"rows": [], "overhead": {}, "versions": {}, "failed": {}}
    for fw in args.frameworks.split(","):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            fw,
            "--device",
            args.device,
            "--rounds",
            str(args.rounds),
            "--budget",
            str(args.budget),
            "--modes",
            args.modes,
            "--shapes",
            ";".join(args.shapes),
        ]
        print(f"== {fw}", file=sys.stderr, flush=True)
        env = allocators.get(args.malloc).environment(dict(os.environ))
        # JAX: the pinned layers compile what the tuner already compiled; a compilation cache
        # shared by the child's jits saves that time (the executables are the same)
        env.setdefault("JAX_COMPILATION_CACHE_DIR", tempfile.mkdtemp(prefix="bench-layers-jax-"))
        env.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
        try:
            proc = subprocess.run(
                cmd, stdout=subprocess.PIPE, text=True, env=env, timeout=args.child_timeout
            )
            stdout, code = proc.stdout, proc.returncode
        except subprocess.TimeoutExpired as e:
            stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            code = f"killed after {args.child_timeout:.0f} s"
        lines = stdout.splitlines()
        rows = [
            json.loads(ln.removeprefix("BENCH-ROW ")) for ln in lines if ln.startswith("BENCH-ROW ")
        ]
        out["rows"] += rows  # what a child finished survives its failure
        final = [ln for ln in lines if ln.startswith("BENCH-LAYERS ")]
        if code != 0 or not final:
            out["failed"][fw] = f"exit {code} after {len(rows)} row(s)"
        else:
            data = json.loads(final[-1].removeprefix("BENCH-LAYERS "))
            out["overhead"][fw] = data["overhead"]
            out["versions"][fw] = data["versions"]
        if on_progress:
            on_progress(out)
    return out


INTRO = """# The drop-in layers: what `auto` picks, and what it costs

`sharedconv.layers` (README: *Use it in your model*) gives PyTorch, Keras 3 and JAX a
shared-channel convolution layer whose `strategy="auto"` picks, per input shape, dtype, device
and mode, the fastest strategy of its framework that agrees with the framework's `fold` on the
call's inputs. This page measures that pick against every strategy the layer could have pinned,
side by side in the same process, and what the choice costs: the first call's tuning and the
per-call dispatch.

How `auto` decides, in order: the layer's memo (a dict lookup per call); a decision cached on
disk for this machine, framework version, device and thread count; stored sharedconv results of
this machine when pointed at them; else an autotune. The autotune runs every candidate once on
the call's inputs (under a JAX or TensorFlow trace: synthetic inputs of the traced shapes) and
refuses any that disagrees with `fold` by more than twice the harness's bound for the dtype (the
comparison on one BLAS thread: see the notes below the table); it
probes each agreeing one with up to three calls, drops those over 3x the best so far (probing
the cheap ones again after all the others, so a cold first call or a slow spell of the machine
does not drop a winner), and times the rest together, paired: blocks of about 10 ms of each in
turn with the harness's timer, a new random order every cycle, for about a second (at least 6
cycles); it keeps the one with the smallest median per-cycle ratio to the best probe's, so a
slow spell that lasts a cycle slows both sides of every ratio. Python's garbage collector is
paused while it tunes. The Keras layer's candidates take its kernel `(KH, KW, 1, N)` and make
the filters inside their own call, as the layer does, so a compiler that lays the filters out
for the strategy does so when tuned too.

Limits, measured: the first call with a new shape compiles (JAX, TensorFlow) and verifies
every candidate, so tuning takes seconds to tens of seconds on 2 cores, and longer where one
candidate is very slow (see the *tuning* column and the notes below the table). Above 32
channels, JAX and TensorFlow leave `split` out of the autotune (it unrolls one convolution per
channel into the graph; compiling it took 40 to 110 s at 100 and 128 channels); pinning it still
works. When Keras traces a TensorFlow training step with an
unknown batch, the decision is made for a batch of 32 (Keras' default) and the strategies leave
the batch to TensorFlow. The Keras layer takes `padding="valid"|"same"`, as Keras' own
convolutions do.
"""


GPU_INTRO = """# The drop-in layers on a GPU: what `auto` picks, and what it costs

The benchmark of [layers.md](layers.md), which says how `auto` decides and how to read the
rows, run on a GPU. The raw rows are `docs/layers-bench/h100*.json`; the layer tests' output on
the same machine is `docs/layers-bench/h100-tests.txt`.
"""


def _pick_over(row: dict) -> bool:
    """Whether auto's pick was over 5% slower than the best: by the paired comparison where the
    row has one (auto / best: the pick and the dispatch), else by the rounds' medians."""
    if row.get("paired"):
        return row["paired"]["auto_best"][0] > 1.05
    return bool(row.get("pick_s")) and row["pick_s"] > 1.05 * row["best_s"]


def _paired_text(row: dict, which: str) -> str:
    value = (row.get("paired") or {}).get(which)
    if not value:
        return "-"
    ratio, low, high = value
    return f"{ratio:.3f} ({low:.3f}-{high:.3f}){' **over**' if ratio > 1.05 else ''}"


def markdown(data: dict, command: str, machine: str, intro: str = INTRO) -> str:
    rows = data["rows"]
    lines = [
        intro,
        "## Auto against every strategy",
        "",
        f"Measured on {machine}, {time.strftime('%Y-%m-%d')}, under the allocator",
        f"`{data.get('malloc', 'system')}` ([allocator.md](allocator.md)), with",
        "",
        f"    {command}",
        "",
        'One process per framework. For each problem and mode the layer with `strategy="auto"` is',
        "built on a fresh decision cache and called once (*tuning* is that first call's autotune),",
        "then it and a layer pinned to each strategy are timed with the harness's timer in",
        "interleaved rounds, each round in a new random order; a time is the median of the rounds'",
        "medians. **auto / best**: the auto layer's time over the fastest pinned strategy's (goal: at",
        "most 1.05). **pick / best**: the pinned layer of auto's pick over the fastest, the pick's",
        "quality without the noise between two measurements of one strategy. **paired**: after the",
        "rounds, auto, the best pinned strategy and auto's pick (when another) in alternating blocks of",
        f"about {BLOCK_S * 1e3:.0f} ms, a new random order each cycle, for {PAIRED_S:g} s (at least {MIN_CYCLES} cycles);",
        "the ratio is the median of the per-cycle ratios, so drift that lasts a cycle cancels, with a",
        "95% bootstrap interval (`harness.stats.paired_ratio`). **control**: a second layer pinned to the",
        "best strategy, in the same paired blocks, over the first: one strategy against itself, the",
        "row's own noise floor (`-`: not measured in that run). Keras layers run",
        "channels_last (Keras' default); train = forward and backward, every call returning `y`, `dx`, `dw`, `db` (as in the harness).",
        "",
        "| framework | problem | mode | auto picked | best pinned | auto | best | auto / best | pick / best | auto / best, paired (95% CI) | pick / best, paired | control / best, paired | tuning |",
        "| --- | --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        ratio = r["ratio"]
        pick_ratio = r["pick_s"] / r["best_s"] if r.get("pick_s") else None
        pick_text = f"{pick_ratio:.3f}" if pick_ratio is not None else "-"
        lines.append(
            f"| {r['framework']} | `{r['problem']}` | {r['mode']} | {r['pick']} | {r['best']} | "
            f"{r['auto_s'] * 1e3:.2f} ms | {r['best_s'] * 1e3:.2f} ms | {ratio:.3f}{'' if ratio <= 1.05 else ' **over**'} | "
            f"{pick_text} | {_paired_text(r, 'auto_best')} | {_paired_text(r, 'pick_best')} | "
            f"{_paired_text(r, 'control_best')} | {r['tuning_s']:.1f} s |"
        )
    if rows:
        within = sum(r["ratio"] <= 1.05 for r in rows)
        pick_within = sum(bool(r.get("pick_s")) and r["pick_s"] <= 1.05 * r["best_s"] for r in rows)
        same = [r["ratio"] for r in rows if r["pick"] == r["best"]]
        lines += [
            "",
            f"**auto within 5% of the best: {within} of {len(rows)} rows; auto's pick (pinned) within 5%: "
            f"{pick_within} of {len(rows)}.**",
        ]
        if same:
            lines += [
                "",
                f"The noise floor, measured in the same run: in the {len(same)} rows where auto picked the very",
                "strategy that was fastest pinned, auto / best compares one strategy with itself, and it",
                f"ranged {min(same):.3f} to {max(same):.3f} (median {statistics.median(same):.3f}).",
            ]
        paired = [r for r in rows if r.get("paired")]
        if paired:
            est = [r["paired"]["auto_best"] for r in paired]
            same_paired = [r["paired"]["auto_best"][0] for r in paired if r["pick"] == r["best"]]
            lines += [
                "",
                f"**Paired: auto within 5% of the best in {sum(e[0] <= 1.05 for e in est)} of {len(est)} rows**"
                f" (the whole 95% interval within 1.05: {sum(e[2] <= 1.05 for e in est)}; the whole"
                f" interval above 1.05: {sum(e[1] > 1.05 for e in est)}).",
            ]
            controls = [
                r["paired"]["control_best"] for r in paired if r["paired"].get("control_best")
            ]
            if controls:
                lines.append(
                    f"The control (a second layer pinned to the best, {len(controls)} rows) read "
                    f"{min(c[0] for c in controls):.3f} to {max(c[0] for c in controls):.3f} (median "
                    f"{statistics.median(c[0] for c in controls):.3f}); over 1.05 in "
                    f"{sum(c[0] > 1.05 for c in controls)}."
                )
            if same_paired:
                lines.append(
                    f"Where auto picked the best pinned strategy ({len(same_paired)} rows), paired auto / best "
                    f"ranged {min(same_paired):.3f} to {max(same_paired):.3f} (median "
                    f"{statistics.median(same_paired):.3f}): the same strategy against itself, plus the dispatch."
                )
        over = [r for r in rows if _pick_over(r)]
        if over:
            lines += [
                "",
                "Where the pick itself was over 5% slower than the best pinned strategy"
                + (" (paired, where measured):" if paired else ":"),
                "",
            ]
            for r in over:
                lines.append(
                    f"- {r['framework']} `{r['problem']}` {r['mode']}: picked {r['pick']} "
                    f"({r['pick_s'] * 1e3:.2f} ms pinned), best {r['best']} ({r['best_s'] * 1e3:.2f} ms)"
                    + (f", paired {_paired_text(r, 'auto_best')}" if r.get("paired") else "")
                    + "; at tuning: "
                    + ", ".join(
                        f"{t[0]} {t[1] * 1e3:.2f} ms"
                        for t in r.get("trials", [])
                        if t[1] is not None and t[0] in (r["pick"], r["best"])
                    )
                )
    lines += [
        "",
        "## Dispatch overhead per call",
        "",
        "On a one-element problem (B=C=H=W=N=K=1), the layer against the same strategy's function",
        "called directly, in alternating blocks of 20 calls (a new random order each cycle) for 4 s;",
        "the times are the blocks' medians and the overhead the median of the per-cycle differences",
        "(paired). Goal: under 20 µs or 2% of the call.",
        "",
        "| framework | layer | strategy called directly | overhead | of the call | goal | note |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- |",
    ]
    for fw, o in data["overhead"].items():
        share = o["overhead_s"] / o["direct_s"]
        met = o["overhead_s"] < 20e-6 or share < 0.02
        lines.append(
            f"| {fw} | {o['layer_s'] * 1e6:.1f} µs | {o['direct_s'] * 1e6:.1f} µs | "
            f"{o['overhead_s'] * 1e6:.1f} µs | {share:.1%} | {'met' if met else '**over**'} | "
            f"{o['note']} |"
        )
    if data["failed"]:
        lines += [
            "",
            "Frameworks that did not finish: "
            + ", ".join(f"{k} ({v})" for k, v in data["failed"].items()),
        ]
    lines += ["", "Versions: " + "; ".join(f"{k}: {v}" for k, v in data["versions"].items()), ""]
    return "\n".join(lines)


def _read_text(path: str) -> str:
    """A saved run, gzipped (``.gz``, as older runs are kept) or not."""
    if path.endswith(".gz"):
        import gzip

        with gzip.open(path, "rt") as f:
            return f.read()
    return Path(path).read_text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--budget", type=float, default=0.15, help="seconds of timing per candidate per round"
    )
    parser.add_argument("--modes", default="forward,train")
    parser.add_argument("--shapes", type=lambda s: s.split(";"), default=SHAPES)
    parser.add_argument(
        "--malloc",
        help="the C allocator of the children (default: the harness's default, jemalloc)",
    )
    parser.add_argument("--out", help="write the Markdown table here")
    parser.add_argument("--child-timeout", type=float, default=None, help="seconds per framework")
    parser.add_argument("--json", help="write the raw rows here")
    parser.add_argument("--render", metavar="JSON", help="only write --out from a saved --json")
    parser.add_argument(
        "--gpu-page", action="store_true", help="with --render: the short intro of layers-gpu.md"
    )
    args = parser.parse_args()
    if args.render:  # one saved run, or several (comma-separated), merged in order
        parts = [json.loads(_read_text(p)) for p in args.render.split(",")]
        data = {"rows": [], "overhead": {}, "versions": {}, "failed": {}}
        for part in parts:  # a later run's row replaces an earlier one of the same case
            new = {(r["framework"], r["problem"], r["mode"]) for r in part["rows"]}
            kept = [r for r in data["rows"] if (r["framework"], r["problem"], r["mode"]) not in new]
            data["rows"] = kept + part["rows"]
            for k in ("overhead", "versions", "failed"):
                data[k].update(part.get(k, {}))
            for fw in part.get("overhead", {}):
                data["failed"].pop(fw, None)
        order = {fw: i for i, fw in enumerate(FRAMEWORKS)}
        shapes = {p: i for i, p in enumerate(SHAPES)}
        data["rows"].sort(
            key=lambda r: (order.get(r["framework"], 99), shapes.get(r["problem"], 99), r["mode"])
        )
        data["malloc"] = parts[-1].get("malloc", "system")
        command = "\n    ".join(dict.fromkeys(p["command"] for p in parts))
        text = markdown(data, command, parts[-1]["machine"], GPU_INTRO if args.gpu_page else INTRO)
        Path(args.out).write_text(text) if args.out else print(text)
        return
    if args.child:
        child(args.child, args.device, args.shapes, args.modes.split(","), args.rounds, args.budget)
        return
    from sharedconv.harness import allocators
    from sharedconv.harness.machine import cpu_model, gpu_name

    args.malloc = args.malloc or allocators.default()
    machine = f"{cpu_model()}, {os.cpu_count()} cores" if args.device == "cpu" else args.device
    if args.device != "cpu":
        machine = f"{gpu_name() or args.device} ({cpu_model()} host)"
    command = "python scripts/bench_layers.py " + shlex.join(sys.argv[1:])
    malloc = allocators.get(args.malloc).how_to_get() or args.malloc

    def save(data: dict) -> None:  # after every framework: a killed run keeps what it measured
        data["malloc"] = malloc
        if args.json:
            Path(args.json).write_text(
                json.dumps({**data, "machine": machine, "command": command}, indent=1)
            )
        if args.out:
            Path(args.out).write_text(markdown(data, command, machine))

    data = run_children(args, save)
    save(data)
    print(markdown(data, command, machine))


if __name__ == "__main__":
    main()
