"""`sharedconv seed` on a reduced shape: structure, agreement, bit-identity, verdicts."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from sharedconv.backends.registry import load_backend
from sharedconv.harness.cli import cli
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
    assert len(runs) == 1 and runs[0].meta["suite"] == "seed"
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
    assert "| backend | option |" in text


def test_seed_refuses_non_keras_backends():
    result = CliRunner().invoke(cli, ["seed", "--backends", "torch"])
    assert result.exit_code == 2
    assert "the seed question is about Keras" in result.output
