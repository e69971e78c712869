"""The drop-in layers' checks for one framework, run in a process of their own.

    python tests/layer_checks.py torch|jax|keras-tensorflow|keras-jax|keras-torch

Prints one JSON object: ``{group: [[item, ok, detail], ...]}``; ``tests/test_layers.py`` turns
each group into a test. Groups: ``oracle`` (every strategy the layer can pick, forward and
``dx``/``dw``/``db``, against the float64 oracle), ``serialization``, ``transforms``
(``torch.compile``; ``jit``/``grad``/``vmap``; Keras ``fit``), ``auto`` (what ``auto`` picks is
one of the verified strategies, and its decision is cached and reused).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import traceback

FRAMEWORK = sys.argv[1]
# cuda: the torch checks run on the GPU; JAX uses its default device (the GPU where there is one)
DEVICE = os.environ.get("SHAREDCONV_LAYER_DEVICE", "cpu")
if FRAMEWORK.startswith("keras-"):
    os.environ["KERAS_BACKEND"] = FRAMEWORK.removeprefix("keras-")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ["SHAREDCONV_CACHE_DIR"] = tempfile.mkdtemp(prefix="sharedconv-layer-cache-")
os.environ["SHAREDCONV_TUNE_BUDGET"] = "0.2"

import numpy as np  # noqa: E402
from sharedconv.backends.agreement import compare_outputs  # noqa: E402
from sharedconv.backends.oracle import reference  # noqa: E402
from sharedconv.backends.problem import make_inputs, parse_problem  # noqa: E402

PROBLEMS = [
    "B=2,C=3,H=9,W=10,N=4,K=3,stride=2x1,dilation=1x2,padding=1",
    "B=2,C=3,H=10,W=9,N=5,KH=2,KW=4,padding=same",
    "B=1,C=2,H=8,W=8,N=3,K=3,bias=0",
]
results: dict[str, list[list]] = {"oracle": [], "serialization": [], "transforms": [], "auto": []}


def record(group: str, item: str, fn) -> None:
    t0 = time.perf_counter()
    try:
        detail = fn()
        if os.environ.get("LAYER_CHECKS_TIMES"):
            print(f"{time.perf_counter() - t0:7.2f} s  {item}", file=sys.stderr)
        results[group].append([item, not detail, detail or ""])
    except Exception as e:  # a crash is a failed check with its reason
        tb = traceback.format_exc().strip().splitlines()[-3:]
        results[group].append([item, False, f"{e.__class__.__name__}: {e} | {' / '.join(tb)}"])


def verdict(problem, got: dict, mode: str, arrays: dict) -> str:
    ref = reference(problem, arrays, mode)
    v = compare_outputs(problem, {k: np.asarray(got[k], np.float64) for k in ref}, ref)
    return "; ".join(v["failures"])


def advised(backend: str, strategy: str, problem, keras_backend: str | None = None):
    """The layer that the answer "use backend/strategy" builds (``layers.advice``): the line
    it gives, evaluated; with ``keras_backend``, the Keras alternative it names."""
    import sharedconv.layers.advice
    from sharedconv.layers.advice import in_your_model

    line = in_your_model(backend, strategy, problem)
    assert line, f"no line for {backend}/{strategy}"
    calls = [
        c.split(" with KERAS_BACKEND=")[0]
        for c in line.removesuffix(" (on the CPU)").split(", or ")
    ]
    wanted = "SharedConv2D" if keras_backend else "SharedConv2d"
    call = next(c for c in calls if f".{wanted}(" in c)
    if keras_backend:
        assert f"KERAS_BACKEND={keras_backend}" in line, line
        import sharedconv.layers.keras  # noqa: F401
    else:
        import sharedconv.layers.torch  # noqa: F401
    return eval(call, {"sharedconv": sharedconv})  # the user's line, as given


def supported_or_refused(backend_name: str, problem, strategy: str, mode: str, check) -> str:
    """A strategy the backend supports must agree with the oracle; one it refuses (e.g. float16
    training on CPU) must be refused by the layer with the backend's reason."""
    from sharedconv.backends.registry import load_backend

    from sharedconv.layers._core import NATIVE, NATIVE_RECORD, LayerError

    if strategy == NATIVE:  # the layer's name for the native backend's kernel
        backend_name, strategy = NATIVE_RECORD
    backend = load_backend(backend_name)
    device = "cuda" if DEVICE == "cuda" else "cpu"
    why = backend.supports(problem, backend.strategy(strategy), device, mode)
    if not why:
        return check()
    try:
        check()
    except LayerError as e:
        return "" if why in str(e) else f"refused, but not with the reason {why!r}: {e}"
    return f"ran, though the backend refuses it: {why}"


# --------------------------------------------------------------------------- torch


def torch_checks() -> None:
    import torch

    from sharedconv.layers.torch import SharedConv2d, strategies

    dev = torch.device(DEVICE)
    if DEVICE == "cuda":  # exact float32, so the oracle's float32 bound applies
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False

    def host(t):  # float64 on the host: NumPy has no bfloat16
        return t.detach().to("cpu", torch.float64).numpy()

    def run(problem, strategy, mode, dtype=torch.float32, module=None):
        arrays = make_inputs(problem, seed=3, mode=mode)
        pad = problem.padding
        m = module or SharedConv2d(
            problem.N,
            problem.kernel,
            problem.stride,
            pad,
            problem.dilation,
            problem.bias,
            strategy,
            dtype=dtype,
            device=dev,
        )
        with torch.no_grad():
            m.weight.copy_(torch.from_numpy(arrays["w"]))
            if problem.bias:
                m.bias.copy_(torch.from_numpy(arrays["b"]))
        x = torch.from_numpy(arrays["x"]).to(dev, dtype).requires_grad_(mode == "train")
        if mode == "forward":
            with torch.no_grad():
                return verdict(problem, {"y": host(m(x))}, mode, arrays)
        y = m(x)
        params = [x, m.weight] + ([m.bias] if problem.bias else [])
        grads = torch.autograd.grad(y, params, torch.from_numpy(arrays["dy"]).to(dev, dtype))
        got = {"y": host(y), "dx": host(grads[0]), "dw": host(grads[1])}
        if problem.bias:
            got["db"] = host(grads[2])
        return verdict(problem, got, mode, arrays)

    # the line an answer gives for a model (`sharedconv recommend`) builds the layer it names
    for backend, strategy in (("torch", "fold"), ("native", "direct_pooled")):
        for text in PROBLEMS[:2]:
            problem = parse_problem(text)
            record(
                "oracle",
                f"advice {backend}/{strategy}/{problem.slug()}",
                lambda b=backend, s=strategy, p=problem: run(
                    p, None, "train", module=advised(b, s, p).to(dev)
                ),
            )

    for i, text in enumerate(PROBLEMS):
        problem = parse_problem(text)
        for s in strategies():
            for mode in ("forward", "train") if i == 0 else ("train",):  # train checks y too
                record(
                    "oracle",
                    f"{s}/{mode}/{problem.slug()}",
                    lambda s=s, m=mode, p=problem: supported_or_refused(
                        "torch", p, s, m, lambda: run(p, s, m)
                    ),
                )
    p64 = parse_problem(PROBLEMS[0] + ",dtype=float64")
    for s in strategies():
        record(
            "oracle",
            f"{s}/train/{p64.slug()}",
            lambda s=s: supported_or_refused(
                "torch", p64, s, "train", lambda: run(p64, s, "train", torch.float64)
            ),
        )
    low = {"bfloat16": torch.bfloat16, "float16": torch.float16}
    for name, dt in low.items():
        p = parse_problem(PROBLEMS[1] + f",dtype={name}")
        for s in strategies():
            for mode in ("forward", "train"):
                record(
                    "oracle",
                    f"{s}/{mode}/{p.slug()}",
                    lambda s=s, p=p, m=mode, dt=dt: supported_or_refused(
                        "torch", p, s, m, lambda: run(p, s, m, dt)
                    ),
                )

    def state_dict() -> str:
        a = SharedConv2d(4, 3, padding="same")
        b = SharedConv2d(4, 3, padding="same")
        b.load_state_dict(a.state_dict())
        x = torch.randn(2, 3, 8, 8)
        with torch.no_grad():
            return "" if torch.equal(a(x), b(x)) else "outputs differ after load_state_dict"

    def init() -> str:
        torch.manual_seed(0)
        ref = torch.nn.Conv2d(1, 6, (3, 5))
        torch.manual_seed(0)
        m = SharedConv2d(6, (3, 5))
        ok = torch.equal(ref.weight[:, 0], m.weight) and torch.equal(ref.bias, m.bias)
        return "" if ok else "initialisation differs from nn.Conv2d(1, N, k)"

    record("serialization", "state_dict round trip", state_dict)
    record("serialization", "nn.Conv2d initialisation", init)

    def compiled() -> str:
        m = SharedConv2d(4, 3, padding=1, device=dev)
        x = torch.randn(2, 3, 10, 10, device=dev)
        with torch.no_grad():
            eager = m(x)
            out = torch.compile(m)(x)
        return "" if torch.allclose(eager, out, atol=1e-5) else "torch.compile output differs"

    record("transforms", "torch.compile", compiled)

    def auto() -> str:
        m = SharedConv2d(4, 3, device=dev)
        x = torch.randn(2, 3, 12, 12, device=dev)
        with torch.no_grad():
            m(x)
        first = m.choice
        if first.source != "autotune" or first.strategy not in strategies():
            return f"first call: {first.source} {first.strategy}"
        if not all(t.verified for t in first.trials if t.median_s is not None):
            return "an unverified candidate was timed"
        m2 = SharedConv2d(4, 3, device=dev)
        with torch.no_grad():
            m2(x)
        return (
            ""
            if m2.choice.source == "cache" and m2.choice.strategy == first.strategy
            else f"second layer: {m2.choice.source}"
        )

    record("auto", "tunes, then reuses the cached decision", auto)


# --------------------------------------------------------------------------- jax


def jax_checks() -> None:
    import jax
    import jax.numpy as jnp

    from sharedconv.layers.jax import SharedConv2d, last_choice, shared_conv2d, strategies

    jax.config.update("jax_enable_x64", True)

    def run(problem, strategy, mode):
        arrays = make_inputs(problem, seed=3, mode=mode)
        dt = jnp.dtype(problem.dtype)
        x, w = jnp.asarray(arrays["x"], dt), jnp.asarray(arrays["w"], dt)
        b = jnp.asarray(arrays["b"], dt) if problem.bias else None
        kw = dict(
            stride=problem.stride,
            padding=problem.padding,
            dilation=problem.dilation,
            strategy=strategy,
            mode=mode,
        )
        if mode == "forward":
            return verdict(
                problem,
                {"y": jax.jit(lambda x, w, b: shared_conv2d(x, w, b, **kw))(x, w, b)},
                mode,
                arrays,
            )

        @jax.jit
        def step(x, w, b, dy):
            if b is None:
                y, pull = jax.vjp(lambda x, w: shared_conv2d(x, w, None, **kw), x, w)
            else:
                y, pull = jax.vjp(lambda x, w, b: shared_conv2d(x, w, b, **kw), x, w, b)
            return y, pull(dy)

        y, grads = step(x, w, b, jnp.asarray(arrays["dy"], dt))
        got = {"y": y, "dx": grads[0], "dw": grads[1]}
        if b is not None:
            got["db"] = grads[2]
        return verdict(problem, got, mode, arrays)

    for i, text in enumerate(PROBLEMS):
        problem = parse_problem(text)
        for s in strategies():
            for mode in ("forward", "train") if i == 0 else ("train",):  # train checks y too
                record(
                    "oracle",
                    f"{s}/{mode}/{problem.slug()}",
                    lambda s=s, m=mode, p=problem: run(p, s, m),
                )
    p64 = parse_problem(PROBLEMS[0] + ",dtype=float64")
    for s in strategies():
        record("oracle", f"{s}/train/{p64.slug()}", lambda s=s: run(p64, s, "train"))
    pbf = parse_problem(PROBLEMS[1] + ",dtype=bfloat16")
    for s in strategies():
        for mode in ("forward", "train"):
            record(
                "oracle",
                f"{s}/{mode}/{pbf.slug()}",
                lambda s=s, m=mode: supported_or_refused("jax", pbf, s, m, lambda: run(pbf, s, m)),
            )

    def grad_and_vmap() -> str:
        x = jax.random.normal(jax.random.key(0), (2, 3, 9, 9))
        w = jax.random.normal(jax.random.key(1), (4, 3, 3))
        f = jax.jit(jax.grad(lambda w: shared_conv2d(x, w, padding="same").sum()))
        g = f(w)
        # d/dw of sum(y) is the sum over batch, channels and positions of the padded input windows
        g_ref = jax.grad(lambda w: shared_conv2d(x, w, padding="same", strategy="fold").sum())(w)
        if not jnp.allclose(g, g_ref, atol=1e-3):
            return "jax.grad under jit differs from the fold strategy's"
        xs = jnp.stack([x, 2 * x])
        v = jax.vmap(lambda xi: shared_conv2d(xi, w, padding="same", mode="forward"))(xs)
        one = shared_conv2d(x, w, padding="same", mode="forward")
        if v.shape != (2, 2, 3, 4, 9, 9) or not jnp.allclose(v[1], 2 * one, atol=1e-4):
            return f"jax.vmap: shape {v.shape} or values differ"
        return ""

    record("transforms", "jit, grad and vmap", grad_and_vmap)

    def module() -> str:
        import equinox as eqx

        m = SharedConv2d(4, 3, padding=1, strategy="fold", key=jax.random.key(0))
        x = jnp.ones((2, 3, 8, 8), jnp.float32)
        g = eqx.filter_jit(eqx.filter_grad(lambda m: m(x).sum()))(m)
        if g.weight.shape != (4, 3, 3) or g.bias.shape != (4,):
            return "equinox gradient shapes"
        path = os.path.join(tempfile.mkdtemp(), "m.eqx")
        eqx.tree_serialise_leaves(path, m)
        m2 = eqx.tree_deserialise_leaves(
            path, SharedConv2d(4, 3, padding=1, strategy="fold", key=jax.random.key(9))
        )
        return "" if jnp.array_equal(m(x), m2(x)) else "equinox serialisation round trip differs"

    record("serialization", "Equinox module: filter_grad and tree_serialise_leaves", module)

    def auto() -> str:
        x = jnp.ones((2, 3, 12, 12), jnp.float32)
        w = jnp.ones((4, 3, 3), jnp.float32)
        shared_conv2d(x, w, mode="forward")
        c = last_choice()
        if c.source != "autotune" or c.strategy not in strategies():
            return f"{c.source} {c.strategy}"
        return ""

    record("auto", "tunes at trace time", auto)


# --------------------------------------------------------------------------- keras


def keras_checks() -> None:
    import keras
    from sharedconv.backends.layouts import from_canonical, to_canonical

    from sharedconv.layers.keras import SharedConv2D, strategies

    backend = keras.backend.backend()

    def grads(layer, x, dy):
        variables = [layer.kernel] + ([layer.bias] if layer.bias is not None else [])
        if backend == "torch":
            import torch

            xt = torch.as_tensor(x).requires_grad_(True)
            y = layer(xt, training=True)
            g = torch.autograd.grad(y, [xt, *(v.value for v in variables)], torch.as_tensor(dy))
            return y.detach().numpy(), [a.numpy() for a in g]
        if backend == "tensorflow":
            import tensorflow as tf

            xt = tf.constant(x)
            with tf.GradientTape() as tape:
                tape.watch(xt)
                y = layer(xt, training=True)
            g = tape.gradient(y, [xt, *variables], output_gradients=tf.constant(dy))
            return y.numpy(), [a.numpy() for a in g]
        import jax

        values = [v.value for v in variables]

        def f(x, values):
            y, _ = layer.stateless_call(values, [], x, training=True)
            return y

        @jax.jit
        def step(x, values, dy):
            y, pull = jax.vjp(f, x, values)
            return y, *pull(dy)

        y, dx, dvals = step(x, values, dy)
        return np.asarray(y), [np.asarray(dx), *(np.asarray(v) for v in dvals)]

    def run(problem, strategy, mode, data_format, layer=None):
        arrays = make_inputs(problem, seed=3, mode=mode)
        lin, lout = ("BHWC", "BHWCN") if data_format == "channels_last" else ("BCHW", "BCNHW")
        pad = problem.padding if isinstance(problem.padding, str) else "valid"
        layer = layer or SharedConv2D(
            problem.N,
            problem.kernel,
            problem.stride,
            pad,
            problem.dilation,
            problem.bias,
            data_format,
            strategy,
        )
        x = np.ascontiguousarray(from_canonical(arrays["x"], lin))
        layer.build(x.shape)
        layer.kernel.assign(np.transpose(arrays["w"], (1, 2, 0))[:, :, None, :])
        if problem.bias:
            layer.bias.assign(arrays["b"])
        if mode == "forward":
            y = keras.ops.convert_to_numpy(layer(x))
            return verdict(problem, {"y": to_canonical(y, lout)}, mode, arrays)
        y, g = grads(layer, x, np.ascontiguousarray(from_canonical(arrays["dy"], lout)))
        got = {
            "y": to_canonical(y, lout),
            "dx": to_canonical(g[0], lin),
            "dw": np.transpose(g[1].reshape(problem.KH, problem.KW, problem.N), (2, 0, 1)),
        }
        if problem.bias:
            got["db"] = g[2]
        return verdict(problem, got, mode, arrays)

    # the line an answer gives for a model (`sharedconv recommend`) builds the layer it names
    answers = [(f"keras-{backend}", "fold_predict")] + (
        [("native", "direct_pooled")] if backend == "torch" else []
    )
    for name, strategy in answers:
        problem = parse_problem(PROBLEMS[1])
        record(
            "oracle",
            f"advice {name}/{strategy}/{problem.slug()}",
            lambda n=name, s=strategy, p=problem: run(
                p, None, "train", "channels_last", layer=advised(n, s, p, keras_backend=backend)
            ),
        )

    # Keras padding is "valid" or "same": the explicit-padding problem is left out
    for text in PROBLEMS[1:]:
        problem = parse_problem(text)
        for s in strategies():
            for mode in ("forward", "train"):
                for fmt in ("channels_last", "channels_first"):
                    if fmt == "channels_first" and text != PROBLEMS[1]:
                        continue
                    record(
                        "oracle",
                        f"{s}/{mode}/{fmt}/{problem.slug()}",
                        lambda s=s, m=mode, p=problem, f=fmt: run(p, s, m, f),
                    )
    strided = parse_problem("B=2,C=3,H=13,W=12,N=4,K=3,stride=2,padding=same")
    for s in strategies():
        record(
            "oracle",
            f"{s}/train/channels_last/{strided.slug()}",
            lambda s=s: run(strided, s, "train", "channels_last"),
        )

    def save_load() -> str:
        inp = keras.Input((12, 12, 5), batch_size=4)
        out = keras.layers.Flatten()(
            SharedConv2D(3, 3, padding="same", strategy="fold", name="shared")(inp)
        )
        model = keras.Model(inp, keras.layers.Dense(1)(out))
        model.compile("adam", "mse")
        x = np.random.default_rng(0).standard_normal((8, 12, 12, 5)).astype("float32")
        model.fit(x, np.zeros((8, 1)), batch_size=4, epochs=1, verbose=0)
        path = os.path.join(tempfile.mkdtemp(), "m.keras")
        model.save(path)
        loaded = keras.models.load_model(path)
        same = np.allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), atol=1e-6)
        config = loaded.get_layer("shared").get_config()
        if config["filters"] != 3 or config["padding"] != "same" or config["strategy"] != "fold":
            return f"config after load: {config}"
        return "" if same else "predictions differ after save/load"

    record("serialization", "model.save + load_model after fit", save_load)

    def fit_trains() -> str:
        inp = keras.Input((10, 10, 4), batch_size=2)
        y = SharedConv2D(2, 3, name="shared")(inp)
        model = keras.Model(inp, keras.layers.Dense(1)(keras.layers.Flatten()(y)))
        model.compile(keras.optimizers.SGD(0.01), "mse")
        x = np.random.default_rng(1).standard_normal((4, 10, 10, 4)).astype("float32")
        before = keras.ops.convert_to_numpy(model.get_layer("shared").kernel).copy()
        model.fit(x, np.ones((4, 1)), batch_size=2, epochs=1, verbose=0)
        after = keras.ops.convert_to_numpy(model.get_layer("shared").kernel)
        choice = model.get_layer("shared").choice
        if np.allclose(before, after):
            return "fit did not change the shared kernel"
        return (
            ""
            if choice is not None and choice.key.mode == "train"
            else "fit did not tune for training"
        )

    record("transforms", "model.fit updates the shared kernel, tuned for training", fit_trains)

    def conv2d_weights() -> str:
        conv = keras.layers.Conv2D(3, 3)
        conv.build((None, 8, 8, 1))
        layer = SharedConv2D(3, 3)
        layer.build((None, 8, 8, 2))
        layer.set_weights(conv.get_weights())
        x = np.random.default_rng(2).standard_normal((1, 8, 8, 2)).astype("float32")
        y = keras.ops.convert_to_numpy(layer(x))
        y0 = keras.ops.convert_to_numpy(conv(x[..., :1]))
        return (
            ""
            if np.allclose(y[..., 0, :], y0, atol=1e-5)
            else "a Conv2D(1 channel)'s weights do not carry over"
        )

    record("serialization", "the weights of a one-channel Conv2D load as they are", conv2d_weights)

    def mixed_precision() -> str:
        """A mixed policy computes in its compute dtype from float32 variables; a policy set
        after the first call is followed (the layer's per-call caches are the policy's)."""
        x = np.random.default_rng(5).standard_normal((2, 9, 9, 3)).astype("float32")
        ref = SharedConv2D(4, 3, strategy="fold")
        want = keras.ops.convert_to_numpy(ref(x))
        problems = []
        for policy, bound in (("mixed_bfloat16", 0.05), ("mixed_float16", 0.005)):
            built = SharedConv2D(4, 3, strategy="fold", dtype=policy)
            built.build(x.shape)
            built.set_weights(ref.get_weights())
            switched = SharedConv2D(4, 3, strategy="fold")
            switched(x)  # decided in float32 first
            switched.set_weights(ref.get_weights())
            switched.dtype_policy = policy
            for how, layer in (("built", built), ("set after a call", switched)):
                y = layer(x)
                dtype = keras.backend.standardize_dtype(y.dtype)
                got = keras.ops.convert_to_numpy(keras.ops.cast(y, "float32"))
                err = float(np.abs(got - want).max() / np.abs(want).max())
                if dtype != policy.removeprefix("mixed_") or err > bound:
                    problems.append(f"{policy} {how}: {dtype} out, relative error {err:.2g}")
                if f"dtype={policy.removeprefix('mixed_')}" not in layer.choice.key.problem:
                    problems.append(f"{policy} {how}: decided for {layer.choice.key.problem}")
        return "; ".join(problems)

    record(
        "transforms",
        "mixed_bfloat16/mixed_float16, given or set after a call, compute in their dtype",
        mixed_precision,
    )

    def auto() -> str:
        problems = []
        rng = np.random.default_rng(4)
        x = rng.standard_normal((2, 12, 12, 3)).astype("float32")
        for mode in ("forward", "train"):
            layer = SharedConv2D(4, 3)
            if mode == "forward":
                layer(x)
            else:  # every candidate's dw is the kernel's gradient, checked against fold's
                layer.build(x.shape)
                grads(layer, x, rng.standard_normal((2, 10, 10, 3, 4)).astype("float32"))
            c = layer.choice
            if c.source != "autotune" or c.strategy not in strategies():
                problems.append(f"{mode}: {c.source} {c.strategy}")
            if not c.key.layout.endswith("kernel KHW1N"):
                problems.append(f"{mode}: the candidates did not take the kernel ({c.key.layout})")
            bad = [f"{t.strategy}: {t.note}" for t in c.trials if not t.verified]
            if bad:
                problems.append(f"{mode}: " + "; ".join(bad))
        return "; ".join(problems)

    record("auto", "tunes at the first call, forward and train, every candidate verified", auto)

    def wrong_rank() -> str:
        from sharedconv.layers._core import LayerError

        layer = SharedConv2D(4, 3)
        layer(np.ones((2, 12, 12, 3), "float32"))
        problems = []
        for shape in ((12, 12, 3), (1, 2, 12, 12, 3)):
            try:
                layer(np.ones(shape, "float32"))
                problems.append(f"{shape} was taken")
            except LayerError as e:
                if "takes 4-D inputs" not in str(e):
                    problems.append(str(e))
        try:
            keras.Model(inp := keras.Input((12, 3)), SharedConv2D(4, 3)(inp))
            problems.append("a 3-D keras.Input was taken")
        except LayerError as e:
            if "takes 4-D inputs" not in str(e):
                problems.append(str(e))
        return "; ".join(problems)

    record(
        "transforms",
        "a 3-D or 5-D input, called or in keras.Model, is refused with the rank it takes",
        wrong_rank,
    )


if FRAMEWORK == "torch":
    torch_checks()
elif FRAMEWORK == "jax":
    jax_checks()
else:
    keras_checks()
print("LAYER-CHECKS " + json.dumps(results))
