"""A crash, a hang or an error in one case is that case's outcome; the others go on."""

from __future__ import annotations

import pytest
from sharedconv.backends.problem import parse_problem
from sharedconv.harness.execute import Plan, execute
from sharedconv.harness.interleave import execute_interleaved

PROBLEM = parse_problem("B=2,C=3,H=10,N=2,K=3")


def run(strategies, modes=("forward",), timeout=20.0):
    records = []
    plan = Plan(
        backends=["faulty"],
        problems=[PROBLEM],
        modes=list(modes),
        strategies=list(strategies),
        threads=1,
        timeout=timeout,
    )
    execute(plan, records.append)
    return {r["strategy"]: r for r in records}


def test_crash_hang_and_raise_are_recorded_and_the_run_goes_on(test_plugins):
    got = run(["ok", "segfault", "ok", "hang", "raise", "wrong", "wrong_layout"], timeout=8.0)
    # plan order follows the backend's declaration; every case has a record
    assert got["segfault"]["status"] == "crashed"
    assert got["segfault"]["signal"] == "SIGSEGV"
    assert "SIGSEGV" in got["segfault"]["reason"]
    assert got["hang"]["status"] == "timeout"
    assert "killed" in got["hang"]["reason"]
    assert got["raise"]["status"] == "error"
    assert "always fails to prepare" in got["raise"]["reason"]
    assert got["wrong"]["status"] == "mismatch"
    assert "y: rel. Frobenius error" in got["wrong"]["reason"]
    assert got["wrong_layout"]["status"] == "mismatch"
    assert "is the declared layout right?" in got["wrong_layout"]["reason"]
    assert got["ok"]["status"] == "pass"


def test_a_worker_crash_keeps_later_cases(test_plugins):
    records = []
    plan = Plan(
        backends=["faulty"],
        problems=[PROBLEM, PROBLEM.with_(C=2)],
        modes=["forward", "train"],
        strategies=["segfault", "ok"],
        threads=1,
        timeout=20.0,
    )
    execute(plan, records.append)
    assert len(records) == 8
    assert [r["status"] for r in records if r["strategy"] == "ok"] == ["pass"] * 4
    assert [r["status"] for r in records if r["strategy"] == "segfault"] == ["crashed"] * 4


@pytest.mark.parametrize("mode", ["forward", "train"])
def test_unavailable_backend_is_reported_with_install_hint(monkeypatch, mode):
    from sharedconv.backends import registry

    backend = registry.load_backend("numpy")
    monkeypatch.setattr(
        type(backend),
        "available",
        lambda self: "numpy is not installed; install it with: pip install numpy",
    )
    records = []
    execute(Plan(backends=["numpy"], problems=[PROBLEM], modes=[mode], threads=1), records.append)
    assert {r["status"] for r in records} == {"unavailable"}
    assert "pip install" in records[0]["reason"]


def _events(monkeypatch, plan):
    """What happened in order: each worker process started, each record written."""
    from sharedconv.harness.worker import WorkerProcess

    events = []
    spawn = WorkerProcess.spawn

    def spy(self):
        events.append(("start", self.backend))
        spawn(self)

    monkeypatch.setattr(WorkerProcess, "spawn", spy)
    records = []
    execute(plan, lambda r: (records.append(r), events.append(("record", r["backend"]))))
    return events, records


def test_workers_start_together_before_any_case_and_a_failed_start_is_its_cases_record(
    test_plugins, monkeypatch
):
    monkeypatch.setenv("SHAREDCONV_TEST_DIE_AT_HELLO", "1")
    plan = Plan(
        backends=["throwaway", "faulty"],
        problems=[PROBLEM],
        modes=["forward"],
        strategies=["direct", "ok"],
        threads=1,
        timeout=20.0,
        timing={"budget": 0.02, "precision": 0.5, "min_samples": 3},
    )
    events, records = _events(monkeypatch, plan)
    # both frameworks import side by side, and only then does the first case run
    assert events[:2] == [("start", "throwaway"), ("start", "faulty")]
    assert events[2] == ("record", "throwaway")
    ok, dead = records
    assert ok["status"] == "pass" and ok["fresh_worker"] is True
    assert dead["status"] == "crashed" and "exited with code 3" in dead["reason"]

    # switched off, or a worker per case: each started at its backend's first case
    monkeypatch.delenv("SHAREDCONV_TEST_DIE_AT_HELLO")
    monkeypatch.setenv("SHAREDCONV_START_AHEAD", "0")
    events, records = _events(monkeypatch, plan)
    assert [e[0] for e in events[:4]] == ["start", "record", "start", "record"]
    monkeypatch.delenv("SHAREDCONV_START_AHEAD")
    plan.isolate = True
    events, records = _events(monkeypatch, plan)
    assert [e[0] for e in events[:4]] == ["start", "record", "start", "record"]
    assert [r["status"] for r in records] == ["pass", "pass"]


def test_a_timeout_during_interleaving_drops_only_its_worker_s_candidates(test_plugins):
    """The hang restarts the faulty plugin's worker: its `ok` call, held for the turns, is gone
    with the process before. The other framework's candidate is still timed in turns (before
    the fix, the failed turn stopped every candidate of the problem)."""
    records = []
    plan = Plan(
        backends=["numpy", "faulty"],
        problems=[PROBLEM],
        modes=["forward"],
        strategies=["oracle32", "ok", "hang"],
        threads=1,
        timeout=8.0,
        interleave=True,
        timing={"budget": 0.2},
    )
    execute_interleaved(plan, records.append)
    got = {r["strategy"]: r for r in records}
    assert got["hang"]["status"] == "timeout"
    assert got["oracle32"]["timing"]["stopped_by"] == "interleaved"
    assert "paired" in got["oracle32"]
    assert "restarted" in got["ok"]["timing"]["interleaved_error"]
    assert got["ok"]["status"] == "pass" and got["ok"]["timing"]["stats"]["median"] > 0
