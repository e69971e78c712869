"""One way to declare a strategy: the descriptor and its builder together (contract.StrategyTable)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
from sharedconv.backends.contract import TAGS, Strategy, StrategyTable
from sharedconv.backends.problem import parse_problem
from sharedconv.backends.registry import BUILTINS, former_names, load_backend
from sharedconv.harness.cli_options import strategies_from
from sharedconv.harness.store import RunWriter, read_run


def _table() -> StrategyTable:
    table = StrategyTable()

    def refuse_odd(problem, device, mode):
        return "odd channels" if problem.C % 2 else None

    @table.strategy(
        "double", "x times 2", output_layout="BNCHW", seed_option=1, supports_fn=refuse_odd
    )
    def double(k, x, w, b):
        return (k, x * 2, w, b)

    table.variant(
        "double",
        form="compiled",
        name="compiled_double",
        description="compiled",
        tags=("compiled",),
    )
    return table


def test_a_strategy_is_declared_with_its_builder_and_a_variant_inherits_from_its_base():
    table = _table()
    assert [s.name for s in table.strategies] == ["double", "compiled_double"]
    plain, variant = table.strategies
    assert (plain.base, plain.form, plain.builder) == ("", "", "double")
    assert (variant.base, variant.form, variant.builder) == ("double", "compiled", "double")
    # what the variant did not restate is its base's
    assert variant.output_layout == "BNCHW" and variant.seed_option == 1
    assert variant.tags == ("compiled",)
    odd, even = parse_problem("B=1,C=3,H=8,W=8,N=2,K=3"), parse_problem("B=1,C=4,H=8,W=8,N=2,K=3")
    assert variant.supports(odd, "cpu", "forward") == "odd channels"
    assert variant.supports(even, "cpu", "forward") is None
    assert variant.describe()["base"] == "double" and variant.describe()["form"] == "compiled"


def test_bind_gives_a_plain_function_of_x_w_b_running_the_base_builder():
    table = _table()
    variant = table.strategies[1]
    f = table.bind(variant, "kit")
    assert f.__name__ == "double"
    assert f(3, "w", None) == ("kit", 6, "w", None)
    assert set(table.bind_all("kit")) == {"double"}  # variants run their base's builder
    assert table.builder_of(variant)("k", 1, 2, 3) == ("k", 2, 2, 3)


def test_a_name_declared_twice_or_a_variant_of_nothing_is_refused():
    table = _table()
    with pytest.raises(ValueError, match="declared twice"):
        table.strategy("double", "again")(lambda k, x, w, b: x)
    with pytest.raises(ValueError, match="declared twice"):
        table.variant("double", form="xla", name="compiled_double", description="again")
    with pytest.raises(ValueError, match="no strategy 'nothing'"):
        table.variant("nothing", form="xla", name="nothing_xla", description="")
    with pytest.raises(ValueError, match="both its base and its form"):
        Strategy("half", "a variant without a form", base="double")


@pytest.mark.parametrize(
    "module, variants",
    [
        (
            "torch_backend",
            {
                "compiled_fold": ("fold", "compiled"),
                "compiled_shift_add": ("shift_add", "compiled"),
            },
        ),
        (
            "tensorflow_backend",
            {"fold_xla": ("fold", "xla"), "shift_add_xla": ("shift_add", "xla")},
        ),
        ("jax_backend", {}),
        (
            "keras_backend",
            {"conv3d_predict": ("conv3d", "predict"), "fold_predict": ("fold", "predict")},
        ),
        ("numpy_backend", {}),
        ("native_backend", {}),
    ],
)
def test_every_built_in_backend_declares_its_strategies_in_its_table(module, variants):
    """A backend's strategies are its table's (no second list to keep in step), every
    variant's base is one of them, and the known variants are forms, not parsed names."""
    mod = importlib.import_module(f"sharedconv.backends.{module}")
    names = [s.name for s in mod.TABLE.strategies]
    assert len(names) == len(set(names))
    plain = {s.name for s in mod.TABLE.strategies if not s.form}
    for s in mod.TABLE.strategies:
        assert not s.form or s.base in plain
        assert callable(mod.TABLE.builder_of(s))
        assert set(s.tags) <= set(TAGS), f"{s.name}: undocumented tags {set(s.tags) - set(TAGS)}"
    found = {s.name: (s.base, s.form) for s in mod.TABLE.strategies if s.form}
    for name, expected in variants.items():
        assert found[name] == expected
    backends = [
        v
        for v in vars(mod).values()
        # not the Keras base class: each Keras backend is a subclass of it
        if isinstance(v, type)
        and v.__module__ == mod.__name__
        and not v.__name__.startswith("_")
        and hasattr(v, "configure")
    ]
    assert backends
    for cls in backends:
        assert [s.name for s in cls().strategies] == names


RESULTS = Path(__file__).resolve().parent.parent / "results"


@pytest.mark.parametrize(
    "backend, old, new",
    [
        ("torch", "unfold_einsum", "patches_einsum"),
        ("torch", "fold_channels_last", "fold_nhwc"),
        ("tensorflow", "depthwise", "grouped"),
        ("tensorflow", "depthwise_xla", "grouped_xla"),
        ("keras-jax", "depthwise_tied", "grouped"),
        ("keras-jax", "depthwise_tied_predict", "grouped_predict"),
    ],
)
def test_a_renamed_strategy_answers_to_its_old_name(backend, old, new):
    """Names harmonised across frameworks (one edit where the strategy is declared); the old
    name still selects it and still reads stored runs."""
    assert load_backend(backend).strategy(old).name == new
    assert former_names()[(backend, old)] == new
    assert strategies_from(old, [backend]) == [new]


def _stored(folder: Path, run_id: str, *strategies: str) -> Path:
    """A run of one torch case per strategy name, as a writer of any version wrote it."""
    writer = RunWriter.create(folder, run_id, {"suite": "x"})
    for strategy in strategies:
        writer.append(
            {
                "case": f"torch/{strategy}/B2-C3-32x32-N8-K3/forward/cpu/jemalloc",
                "backend": "torch",
                "strategy": strategy,
                "problem": "B=2,C=3,H=32,W=32,N=8,K=3",
                "mode": "forward",
                "status": "pass",
                "malloc": "jemalloc",
            }
        )
    writer.finish()
    return folder / run_id


def test_a_record_stored_under_an_old_name_reads_under_the_new_one(tmp_path):
    single = read_run(_stored(tmp_path, "one", "unfold_einsum"))
    assert single.cases[0].strategy == "patches_einsum"
    assert single.cases[0].formerly == "unfold_einsum"
    assert single.cases[0].case.startswith("torch/patches_einsum/")
    # the old record and a newer one of the same case are one case: the last line counts
    run = read_run(_stored(tmp_path, "both", "unfold_einsum", "patches_einsum", "fold"))
    assert [r.strategy for r in run.cases] == ["patches_einsum", "fold"]
    assert run.cases[0].formerly is None and "formerly" not in run.cases[0].to_dict()
    assert any("again; the last line counts" in w for w in run.warnings)


@pytest.mark.parametrize(
    "run", sorted(p.name for p in RESULTS.iterdir() if (p / "run.json").exists())
)
def test_every_committed_run_reads_under_the_current_names(run):
    loaded = read_run(RESULTS / run)
    assert loaded.cases and not loaded.warnings
    for r in loaded.cases:
        if r.backend in BUILTINS and r.strategy != "*":
            assert load_backend(r.backend).strategy(r.strategy).name == r.strategy
