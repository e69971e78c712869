"""`sharedconv seed` on a reduced shape: structure, agreement, bit-identity, verdicts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sharedconv.backends.registry import load_backend
from sharedconv.harness.cli import cli
from sharedconv.harness.records import CaseRecord
from sharedconv.harness.seed import rows, verdicts
from sharedconv.harness.store import find_runs

KERAS = [
    n
    for n in ("keras-torch", "keras-jax", "keras-tensorflow")
    if load_backend(n).available() is None
]


@pytest.mark.skipif(
    not KERAS, reason="needs keras and a framework: pip install 'sharedconv[keras,torch]'"
)
def test_seed_on_a_reduced_shape(tmp_path):
    doc = tmp_path / "seed.md"
    result = CliRunner().invoke(
        cli,
        [
            "seed", "--shape", "B=2,C=3,H=24,W=24,N=4,K=5", "--backends", ",".join(KERAS),
            "--budget", "0.05", "--results", str(tmp_path / "results"), "--write-doc", str(doc),
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    runs, _ = find_runs([tmp_path / "results"])
    assert len(runs) == 1 and runs[0].meta.suite == "seed"
    table = rows(runs[0].cases)
    # every backend: three options in two call paths, all agreeing with the oracle
    assert len(table) == 6 * len(KERAS)
    assert {r["option"] for r in table} == {1, 2, 3}
    assert all(r["status"] == "pass" and r["error"] < 1e-5 for r in table), table
    assert all(r["median_s"] > 0 for r in table)
    for backend in KERAS:
        ident = [r["bit-identical to option 1"] for r in table if r["backend"] == backend]
        assert all(v in (True, False) for v in ident)
        assert [r for r in table if r["backend"] == backend and r["option"] == 1][0][
            "bit-identical to option 1"
        ] is True
    sentences = verdicts(table)
    assert len(sentences) == 2 * len(KERAS)
    assert all("is fastest at" in s and "faster than option" in s for s in sentences)
    assert "On this CPU with" in result.output
    text = doc.read_text()
    assert text.startswith("# The seed question, answered on this machine")
    assert "| backend | allocator | option |" in text
    assert "Theano is no longer developed" in text
    assert runs[0].meta.command in text  # the page names the command that wrote it


def test_seed_rows_and_verdicts_keep_allocators_apart():
    def record(strategy, option, malloc, median, digest):
        return {
            "case": f"keras-jax/{strategy}/p/forward/cpu/{malloc}",
            "problem": "B=1,C=1,H=8,W=8,N=1,K=3",
            "backend": "keras-jax",
            "strategy": strategy,
            "seed_option": option,
            "malloc": malloc,
            "mode": "forward",
            "status": "pass",
            "output_digest": digest,
            "timing": {"stats": {"median": median, "iqr": 0.0}},
        }

    records = [
        record("conv3d", 1, "jemalloc", 0.010, "a"),
        record("time_distributed", 2, "jemalloc", 0.020, "a"),
        record("conv3d", 1, "system", 0.050, "b"),
        record("time_distributed", 2, "system", 0.030, "c"),
    ]
    table = rows([CaseRecord.from_dict(r) for r in records])
    assert {(r["allocator"], r["option"]) for r in table} == {
        ("jemalloc", 1), ("jemalloc", 2), ("system", 1), ("system", 2)
    }  # fmt: skip
    # bit-identity is against option 1 under the same allocator
    ident = {(r["allocator"], r["option"]): r["bit-identical to option 1"] for r in table}
    assert ident[("jemalloc", 2)] is True and ident[("system", 2)] is False
    sentences = verdicts(table)
    assert len(sentences) == 2
    assert any("jemalloc allocator), option 1" in s for s in sentences)
    assert any("system allocator), option 2" in s for s in sentences)


def test_seed_refuses_non_keras_backends():
    result = CliRunner().invoke(cli, ["seed", "--backends", "torch"])
    assert result.exit_code == 2
    assert "the seed question is about Keras" in result.output
