"""How the layers choose a strategy, with a NumPy "framework" and fake timings: no
deep-learning framework is imported here."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from sharedconv.backends.contract import Strategy
from sharedconv.backends.oracle import forward
from sharedconv.backends.problem import ConvProblem, parse_problem
from sharedconv.harness.machine import cpu_model
from sharedconv.harness.store import RunWriter

from sharedconv.layers import _core
from sharedconv.layers._core import Cache, Candidate, Key, LayerError, Runner, Selector

PROBLEM = ConvProblem(B=2, C=3, H=8, W=8, N=4, KH=3, KW=3)
RNG = np.random.default_rng(0)
X = RNG.standard_normal(PROBLEM.x_shape).astype(np.float32)
W = RNG.standard_normal(PROBLEM.w_shape).astype(np.float32)
B = RNG.standard_normal((PROBLEM.N,)).astype(np.float32)


def conv(x, w, b):
    return forward(PROBLEM, x, w, b, compute_dtype=np.float32)


def broken(x, w, b):
    return conv(x, w, b) + 0.5


def failing(x, w, b):
    raise RuntimeError("no kernel for this shape")


def key(**changes) -> Key:
    fields = dict(
        framework="numpy",
        framework_version="1",
        device="cpu",
        threads=2,
        machine="test machine",
        problem=PROBLEM.to_text(),
        mode="forward",
        layout="BCHW->BCNHW",
    )
    return Key(**{**fields, **changes})


def candidates(**fns) -> dict[str, Candidate]:
    return {name: Candidate(Strategy(name, name), fn) for name, fn in fns.items()}


RUNNER = Runner(
    prepare=lambda fn, mode: lambda: (fn(X, W, B),),
    sync=lambda outputs: None,
    to_numpy=lambda outputs: tuple(np.asarray(o) for o in outputs),
)


def timed_runner(times: dict[str, float]):
    """A runner and a block timer whose 'times' are given: a block of n calls of a candidate
    takes n times its time."""
    current = {"name": None}
    by_fn = {}

    def prepare(fn, mode):
        name = by_fn[id(fn)]

        def call():
            current["name"] = name
            return (fn(X, W, B),)

        return call

    def block(call, sync, n):
        call()
        return n * times[current["name"]]

    return prepare, block, by_fn


def tune(
    cands: dict[str, Candidate], times: dict[str, float], budget: float = 1.0, k: Key | None = None
):
    prepare, block, by_fn = timed_runner(times)
    by_fn.update({id(c.fn): name for name, c in cands.items()})
    runner = Runner(prepare, RUNNER.sync, RUNNER.to_numpy)
    return _core.autotune(k or key(), PROBLEM, cands, runner, budget, block=block)


def test_picks_the_fastest_from_the_timings():
    cands = candidates(
        fold=conv, fast=lambda x, w, b: conv(x, w, b), slow=lambda x, w, b: conv(x, w, b)
    )
    choice = tune(cands, {"fold": 2e-3, "fast": 1e-3, "slow": 3e-3})
    assert choice.strategy == "fast" and choice.source == "autotune"
    assert {t.strategy: t.median_s for t in choice.trials}["fast"] == pytest.approx(1e-3)
    assert all(t.verified for t in choice.trials)


def test_refuses_a_candidate_that_disagrees_with_the_reference_even_when_fastest():
    choice = tune(candidates(fold=conv, wrong=broken), {"fold": 2e-3, "wrong": 1e-6})
    assert choice.strategy == "fold"
    wrong = next(t for t in choice.trials if t.strategy == "wrong")
    assert not wrong.verified and wrong.median_s is None
    assert wrong.note.startswith("refused: disagrees with the reference: y off by")


def test_a_failing_candidate_is_refused_with_its_reason_and_the_others_still_tuned():
    choice = tune(
        candidates(fold=conv, crash=failing, ok=lambda x, w, b: conv(x, w, b)),
        {"fold": 2e-3, "ok": 1e-3, "crash": 0},
    )
    assert choice.strategy == "ok"
    crash = next(t for t in choice.trials if t.strategy == "crash")
    assert crash.note == "failed: RuntimeError: no kernel for this shape"


def test_no_candidate_at_all_is_a_layer_error_that_lists_the_reasons():
    with pytest.raises(LayerError, match="fold: failed: RuntimeError: no kernel"):
        tune(candidates(fold=failing), {})


def test_choose_pins_falls_back_caches_and_retunes_when_the_key_changes(tmp_path, monkeypatch):
    cache = Cache(tmp_path)
    tuned = []

    def run(selector, k):
        cands = candidates(fold=conv, other=lambda x, w, b: conv(x, w, b))
        prepare, block, by_fn = timed_runner({"fold": 2e-3, "other": 1e-3})
        by_fn.update({id(c.fn): name for name, c in cands.items()})

        def runner():
            tuned.append(k)
            return Runner(prepare, RUNNER.sync, RUNNER.to_numpy)

        return _core.choose(
            selector,
            k,
            PROBLEM,
            lambda: (cands, {"gone": "not offered here"}),
            runner,
            block=block,
        )[0]

    assert run(Selector(strategy="fold", cache=cache), key()).source == "pinned"
    with pytest.raises(LayerError, match="strategy 'gone' cannot compute .*: not offered here"):
        run(Selector(strategy="gone", cache=cache), key())
    monkeypatch.setenv(_core.AUTOTUNE_ENV, "0")
    fallback = run(Selector(cache=cache), key())
    assert (fallback.source, fallback.strategy) == ("fallback", "fold") and not tuned
    monkeypatch.delenv(_core.AUTOTUNE_ENV)

    first = run(Selector(cache=cache), key())
    assert (first.source, first.strategy) == ("autotune", "other") and len(tuned) == 1
    again = run(Selector(cache=cache), key())
    assert again.source == "cache" and again.strategy == "other" and len(tuned) == 1
    # a new framework version, thread count or machine is a new key: tuned again
    for changed in (key(framework_version="2"), key(threads=1), key(machine="another")):
        assert run(Selector(cache=cache), changed).source == "autotune"
    assert len(tuned) == 4
    assert len(Cache(tmp_path).entries()) == 4


def test_a_damaged_cache_is_reported_and_ignored_never_fatal(tmp_path):
    (tmp_path / "layers.json").write_text('{"schema": 1, "entries": {"x": ')
    cache = Cache(tmp_path)
    assert cache.get(key()) is None
    assert "could not be read" in cache.problems[0]
    (tmp_path / "layers.json").write_text(
        json.dumps({"schema": 1, "entries": {key().text(): {"strategy": 3}}})
    )
    cache = Cache(tmp_path)
    assert cache.get(key()) is None and "damaged entry" in cache.problems[0]
    choice = tune(candidates(fold=conv), {"fold": 1e-3})
    cache.put(choice)
    assert Cache(tmp_path).get(key()).strategy == "fold"


def test_an_unwritable_cache_keeps_the_decision_for_the_process(tmp_path):
    target = tmp_path / "file"
    target.write_text("not a folder")
    cache = Cache(target / "sub")
    cache.put(tune(candidates(fold=conv), {"fold": 1e-3}))
    assert "could not be cached" in cache.problems[0]


def _stored_run(root: Path, cpu: str, strategy_times: dict[str, float]) -> Path:
    """A run of this problem; a name "backend/strategy" is another backend's strategy."""
    writer = RunWriter.create(root, "stored", {"machine": {"cpu_model": cpu}, "suite": None})
    for name, median in strategy_times.items():
        backend, _, strategy = name.rpartition("/")
        backend = backend or "numpy"
        writer.append(
            {
                "case": f"{backend}/{strategy}/{PROBLEM.slug()}/forward/cpu/jemalloc",
                "backend": backend,
                "strategy": strategy,
                "problem": PROBLEM.to_text(),
                "mode": "forward",
                "device": "cpu",
                "malloc": "jemalloc",
                "status": "pass",
                "timing": {"stats": {"median": median}, "block_times": [median]},
            }
        )
    writer.finish()
    return writer.folder


def test_stored_results_of_this_machine_decide_without_tuning(tmp_path):
    folder = _stored_run(tmp_path, cpu_model(), {"fold": 3e-3, "other": 1e-3, "not_offered": 1e-9})
    choice = _core.from_results(key(), PROBLEM, ["fold", "other"], [folder])
    assert choice is not None and choice.strategy == "other" and choice.source == "results"
    assert "stored" in choice.reason
    other_machine = _stored_run(tmp_path / "b", "Some Other CPU", {"fold": 1e-3})
    assert _core.from_results(key(), PROBLEM, ["fold"], [other_machine]) is None
    assert _core.from_results(key(), PROBLEM, ["fold"], [tmp_path / "no-such-run"]) is None


def test_stored_native_kernel_cases_answer_for_the_layer_candidate_native(tmp_path):
    # the native backend's kernel is the layer candidate "native" in every framework's layer
    # that offers it; another backend's strategy of the same name is not
    # (the kernel with pooled outputs, as the layer runs it, or a run's plain `direct`)
    for record in ("native/direct_pooled", "native/direct"):
        times = {"fold": 3e-3, record: 1e-3, "torch/native": 1e-9, "torch/fold": 1e-9}
        folder = _stored_run(tmp_path / record, cpu_model(), times)
        choice = _core.from_results(key(), PROBLEM, ["fold", _core.NATIVE], [folder])
        assert choice is not None and choice.strategy == _core.NATIVE, record
        assert _core.from_results(key(), PROBLEM, ["fold"], [folder]).strategy == "fold"


def test_the_problem_of_a_call_has_one_spelling_and_clear_errors():
    p = _core.make_problem((2, 8, 8, 3), "BHWC", 4, (3, 3), (1, 1), (0, 0), (1, 1), True, "float32")
    assert p == ConvProblem(B=2, C=3, H=8, W=8, N=4, KH=3, KW=3) and p.padding == "valid"
    with pytest.raises(LayerError, match=r"must be 4-D \(B, C, H, W\), got shape \(2, 3\)"):
        _core.make_problem((2, 3), "BCHW", 4, (3, 3), (1, 1), "valid", (1, 1), True, "float32")
    with pytest.raises(LayerError, match="the kernel .* is larger than the padded input"):
        _core.make_problem(
            (1, 1, 2, 2), "BCHW", 4, (3, 3), (1, 1), "valid", (1, 1), True, "float32"
        )


def test_the_budget_comes_from_the_argument_or_the_environment(monkeypatch):
    assert _core.tune_budget(None) == _core.DEFAULT_BUDGET
    monkeypatch.setenv(_core.BUDGET_ENV, "0.5")
    assert _core.tune_budget(None) == 0.5 and _core.tune_budget(2) == 2
    monkeypatch.setenv(_core.BUDGET_ENV, "soon")
    with pytest.raises(LayerError, match="is not a number of seconds"):
        _core.tune_budget(None)


def test_cache_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(_core.CACHE_ENV, str(tmp_path))
    assert _core.cache_dir() == tmp_path
    monkeypatch.delenv(_core.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _core.cache_dir() == tmp_path / "xdg" / "sharedconv"
    assert os.fspath(_core.cache_dir()).endswith("sharedconv")


def test_paired_timing_overrules_the_probes_and_a_slow_spell():
    cands = candidates(fold=conv, a=lambda x, w, b: conv(x, w, b), b=lambda x, w, b: conv(x, w, b))
    # the probes (the fastest of a few calls each) put b 1.75x behind a, as probes taken
    # seconds apart did on this machine (docs/layers.md); in truth b is 5% faster. The paired
    # cycles run through slow spells: each cycle its own factor, 1x to 3x, for both candidates
    # (drift lasting a cycle), and in every fifth cycle a spell of 3x more that hits only b
    probe = {"fold": 5e-3, "a": 1.0e-3, "b": 1.75e-3}
    truth = {"a": 1.05e-3, "b": 1.0e-3}
    prepare, _, by_fn = timed_runner({})
    by_fn.update({id(c.fn): name for name, c in cands.items()})
    now = [0.0]  # a fake clock: a probed call takes its candidate's probe time
    current = {}
    blocks = []
    spells = np.random.default_rng(3).uniform(1.0, 3.0, size=1000)

    def tracking_prepare(fn, mode):
        call = prepare(fn, mode)

        def tracked():
            current["name"] = by_fn[id(fn)]
            now[0] += probe[current["name"]]
            return call()

        return tracked

    def per_call(cycle, name):
        return truth[name] * spells[cycle] * (3.0 if name == "b" and cycle % 5 == 0 else 1.0)

    def block(call, sync, n):
        call()
        cycle = len(blocks) // 2  # two candidates a cycle
        blocks.append((cycle, current["name"], n))
        now[0] += n * per_call(cycle, current["name"])
        return n * per_call(cycle, current["name"])

    runner = Runner(tracking_prepare, RUNNER.sync, RUNNER.to_numpy)
    choice = _core.autotune(key(), PROBLEM, cands, runner, 1.0, clock=lambda: now[0], block=block)
    assert choice.strategy == "b"
    trials = {t.strategy: t for t in choice.trials}
    assert trials["a"].paired == pytest.approx([1.05, 1.05, 1.05])
    assert trials["b"].paired is None and "the pick" in trials["b"].note
    assert "1.050x the pick" in trials["a"].note
    # the times shown are on one clock (the best probe's candidate's): their order is the pick's
    assert trials["a"].median_s == pytest.approx(1.05 * trials["b"].median_s)
    # probed first, then over PRUNE_FACTOR x the best probe: not timed
    assert trials["fold"].median_s == pytest.approx(5e-3) and trials["fold"].paired is None
    assert "over 3x the best call: not timed further" in trials["fold"].note
    # each block holds about PAIRED_BLOCK_S of calls (sized by the probes), and every cycle ran
    # both candidates, for about the budget
    assert {(name, n) for _, name, n in blocks} == {("a", 10), ("b", 6)}
    cycles = [c for c, _, _ in blocks]
    assert len(blocks) % 2 == 0 and all(cycles.count(c) == 2 for c in set(cycles))
    assert len(set(cycles)) >= _core.PAIRED_MIN_CYCLES
    spent = sum(n * per_call(c, m) for c, m, n in blocks)
    assert 0.8 <= spent < 1.2
    # the medians of the same blocks, unpaired, would have picked a
    unpaired = {n: np.median([per_call(c, m) for c, m, _ in blocks if m == n]) for n in truth}
    assert unpaired["a"] < unpaired["b"]


def test_the_cache_command_shows_and_clears_decisions(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from sharedconv.harness.cli import cli

    monkeypatch.setenv(_core.CACHE_ENV, str(tmp_path))
    runner = CliRunner()
    empty = runner.invoke(cli, ["layers", "cache"])
    assert empty.exit_code == 0 and "no cached decisions" in empty.output
    Cache(tmp_path).put(
        tune(
            candidates(fold=conv, other=lambda x, w, b: conv(x, w, b)),
            {"fold": 2e-3, "other": 1e-3},
        )
    )
    shown = runner.invoke(cli, ["layers", "cache"])
    assert shown.exit_code == 0, shown.output
    assert (
        "B=2,C=3,H=8,W=8,N=4,K=3" in shown.output
        and "other" in shown.output
        and "1.000 ms" in shown.output
    )
    as_json = json.loads(runner.invoke(cli, ["layers", "cache", "--json"]).output)
    assert as_json[0]["strategy"] == "other" and as_json[0]["source"] == "autotune"
    cleared = runner.invoke(cli, ["layers", "cache", "--clear"])
    assert cleared.exit_code == 0 and "cleared 1 cached decision(s)" in cleared.output
    assert Cache(tmp_path).entries() == []
    (tmp_path / "layers.json").write_text("{not json")
    damaged = runner.invoke(cli, ["layers", "cache"])
    assert damaged.exit_code == 0 and "could not be read" in damaged.output


def test_compiled_frameworks_leave_unrolled_strategies_out_of_the_autotune_above_the_limit(
    tmp_path,
):
    many = ConvProblem(B=1, C=_core.UNROLL_LIMIT + 1, H=8, W=8, N=4, KH=3, KW=3)
    cands = candidates(fold=conv)
    cands["split"] = Candidate(
        Strategy("split", "split", tags=("unrolled",)), lambda x, w, b: conv(x, w, b)
    )
    prepare, block, by_fn = timed_runner({"fold": 2e-3, "split": 1e-3})
    by_fn.update({id(c.fn): name for name, c in cands.items()})

    def pick(compiled: bool, strategy: str = "auto"):
        selector = Selector(strategy=strategy, cache=Cache(tmp_path / f"{compiled}{strategy}"))
        runner = Runner(prepare, RUNNER.sync, RUNNER.to_numpy)
        k = key(problem=many.to_text())
        return _core.choose(
            selector,
            k,
            many,
            lambda: (cands, {}),
            lambda: runner,
            block=block,
            compiled=compiled,
        )[0]

    eager = pick(compiled=False)
    assert eager.strategy == "split"
    compiled = pick(compiled=True)
    assert compiled.strategy == "fold"
    split = next(t for t in compiled.trials if t.strategy == "split")
    assert split.note.startswith(f"not tried: unrolls {many.C} convolutions")
    assert pick(compiled=True, strategy="split").strategy == "split"  # pinned still runs it


def test_a_weights_transform_is_part_of_every_candidate_s_call():
    """The Keras layer hands its candidates the kernel (KH, KW, 1, N): each candidate makes the
    filters inside its own call, the call the autotune times and the layer then runs."""
    problem = ConvProblem(B=1, C=2, H=6, W=6, N=3, KH=3, KW=3)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1, 2, 6, 6))
    w = rng.standard_normal((3, 3, 3))
    kernel = np.transpose(w, (1, 2, 0))[:, :, None, :]  # (KH, KW, 1, N), Keras' layout
    seen = []

    def filters(k):
        seen.append(k.shape)
        return np.transpose(k.reshape(3, 3, 3), (2, 0, 1))

    fn = _core.wrap(
        lambda x, w, b: forward(problem, x, w, b),
        Strategy("fold", "fold"),
        "BCHW",
        "BCNHW",
        np.transpose,
        weights=filters,
    )
    np.testing.assert_allclose(fn(x, kernel, None), forward(problem, x, w, None))
    assert seen == [(3, 3, 1, 3)]
    plain = _core.wrap(lambda x, w, b: w, Strategy("fold", "fold"), "BCHW", "BCNHW", np.transpose)
    assert plain(x, w, None) is w  # without one, the filters pass through untouched


def test_candidates_are_compared_on_one_blas_thread(monkeypatch):
    """The comparison with the reference runs on one BLAS thread: OpenBLAS's pool keeps
    spinning after a multi-threaded call, into the timing of the candidate right after it
    (every candidate but the reference was timed beside it: docs/layers.md)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    compare = _core._disagreements

    def spying(*args, **kwargs):
        seen.append([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"])
        return compare(*args, **kwargs)

    monkeypatch.setattr(_core, "_disagreements", spying)
    with threadpool_limits(limits=2, user_api="blas"):  # what a 2-core process has outside
        choice = tune(
            candidates(fold=conv, other=lambda x, w, b: conv(x, w, b)),
            {"fold": 2e-3, "other": 1e-3},
        )
    assert choice.strategy == "other"
    assert seen and all(threads == [1] * len(threads) for threads in seen), seen


@pytest.mark.parametrize(
    ("backend", "strategy", "problem", "line"),
    [
        (
            "native",
            "direct_pooled",
            "B=4,C=16,H=64,W=64,N=16,K=5",
            'sharedconv.layers.torch.SharedConv2d(16, 5, strategy="native"), or '
            'sharedconv.layers.keras.SharedConv2D(16, 5, strategy="native") with '
            "KERAS_BACKEND=torch (on the CPU)",
        ),
        (
            "torch",
            "fold",
            "B=2,C=3,H=13,W=12,N=4,K=3,stride=2,padding=same",
            'sharedconv.layers.torch.SharedConv2d(4, 3, stride=2, padding="same", strategy="fold")',
        ),
        (
            "torch",
            "fold",
            "B=1,C=1,H=8,W=8,N=2,K=3,padding=2x1,bias=0",
            'sharedconv.layers.torch.SharedConv2d(2, 3, padding=(2, 1), bias=False, strategy="fold")',
        ),
        (
            "jax",
            "shift_add",
            "B=1,C=1,H=12,W=12,N=2,KH=3,KW=5,dilation=2,bias=0",
            'sharedconv.layers.jax.shared_conv2d(x, w, None, dilation=2, strategy="shift_add")',
        ),
        (
            "tensorflow",
            "fold",
            "B=1,C=1,H=8,W=8,N=2,KH=3,KW=5,stride=1x2",
            'sharedconv.layers.keras.SharedConv2D(2, (3, 5), strides=(1, 2), strategy="fold") '
            "with KERAS_BACKEND=tensorflow",
        ),
        (
            "keras-jax",
            "fold_predict",
            "B=1,C=1,H=8,W=8,N=2,K=3,bias=0",
            'sharedconv.layers.keras.SharedConv2D(2, 3, use_bias=False, strategy="fold") '
            "with KERAS_BACKEND=jax",
        ),
        # no layer runs these: a graph compiled apart, the seed's Keras formulation, a plugin's,
        # and Keras has no explicit padding
        ("torch", "compiled_fold", "B=1,C=1,H=8,W=8,N=2,K=3", None),
        ("tensorflow", "fold_xla", "B=1,C=1,H=8,W=8,N=2,K=3", None),
        ("keras-tensorflow", "time_distributed", "B=1,C=1,H=8,W=8,N=2,K=3", None),
        ("numba", "tuned", "B=1,C=1,H=8,W=8,N=2,K=3", None),
        ("tensorflow", "fold", "B=1,C=1,H=8,W=8,N=2,K=3,padding=1", None),
    ],
)
def test_an_answer_names_the_layer_call_that_runs_it(backend, strategy, problem, line):
    from sharedconv.layers.advice import in_your_model

    assert in_your_model(backend, strategy, parse_problem(problem)) == line


def test_the_recommendation_ends_with_the_line_for_your_model():
    from sharedconv.harness.records import CaseRecord, Memory
    from sharedconv.harness.summary import Row, recommendation

    def row(backend, strategy, median, peak):
        record = CaseRecord(
            backend=backend,
            strategy=strategy,
            problem="B=2,C=3,H=16,W=16,N=4,K=3",
            memory=Memory(peak_bytes=peak),
        )
        return Row(record, median, 0.0, False, peak, None, None, None, {}, None)

    rows = [row("torch", "fold", 1.0, 2**30), row("jax", "vmap", 2.0, 2**20)]
    text = recommendation(rows)
    assert text.startswith("Use torch/fold: 1.00 s")
    assert text.endswith(
        ' In your model: sharedconv.layers.torch.SharedConv2d(4, 3, strategy="fold").'
    )
    # under a memory limit: the line of the strategy recommended, after what the limit changed
    limited = recommendation(rows, 2**21)
    assert "Within 2.0 MiB" in limited
    assert limited.endswith('sharedconv.layers.jax.shared_conv2d(x, w, b, strategy="vmap").')
    # a strategy no layer runs: the sentence alone
    assert "In your model" not in recommendation([row("numba", "tuned", 1.0, 2**20)])
