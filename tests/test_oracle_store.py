"""The parent's oracle: computed once per problem, on one BLAS thread."""

from __future__ import annotations

import numpy as np
from sharedconv.backends.problem import parse_problem
from sharedconv.harness import execute


def test_the_oracle_runs_on_one_blas_thread_and_is_computed_once(monkeypatch, tmp_path):
    """The parent computes a problem's oracle just before a worker times its first case; on
    the machine's BLAS pool, OpenBLAS's threads would keep spinning into that case's timing."""
    from threadpoolctl import threadpool_info, threadpool_limits

    seen = []
    reference = execute.oracle.reference

    def spying(*args, **kwargs):
        seen.append([p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"])
        return reference(*args, **kwargs)

    monkeypatch.setattr(execute.oracle, "reference", spying)
    store = execute.OracleStore(tmp_path)
    problem = parse_problem("B=1,C=2,H=8,W=8,N=2,K=3")
    with threadpool_limits(limits=2, user_api="blas"):  # what a 2-core parent has
        folder = store.path(problem, 0, "train")
        assert store.path(problem, 0, "train") == folder
    assert seen and all(threads == [1] * len(threads) for threads in seen), seen
    assert len(seen) == 1
    assert np.load(folder / "y.npy").shape == problem.y_shape
