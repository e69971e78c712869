"""``--executor ray`` on a real local Ray cluster: a head and a second node started with
``ray start`` on this machine, each with the exclusive ``sharedconv`` resource and a resource of
its own (``node_a``, ``node_b``). No part of Ray is mocked."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="the cluster tests need sharedconv[ray]")

PLUGINS = Path(__file__).parent / "plugins"
RAY = str(Path(sys.executable).parent / "ray")
pytestmark = pytest.mark.skipif(not Path(RAY).exists(), reason="needs the ray command")


def _env() -> dict[str, str]:
    # the test plugins (faulty/slow) on the nodes' and the submitter's path
    return {
        **os.environ,
        "RAY_USAGE_STATS_ENABLED": "0",
        "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start_node(address: str, name: str) -> None:
    subprocess.run(
        [RAY, "start", f"--address={address}", "--num-cpus=1", "--disable-usage-stats",
         "--resources", json.dumps({"sharedconv": 1, name: 1})],
        env=_env(), check=True, capture_output=True, timeout=120,
    )  # fmt: skip


def _wait_for_nodes(address: str, count: int) -> None:
    probe = (
        "import ray, sys, time; ray.init(address=sys.argv[1], log_to_driver=False)\n"
        "deadline = time.time() + 60\n"
        "while time.time() < deadline:\n"
        "    up = [n for n in ray.nodes() if n['Alive'] and n['Resources'].get('sharedconv')]\n"
        "    if len(up) >= int(sys.argv[2]): sys.exit(0)\n"
        "    time.sleep(0.5)\n"
        "sys.exit(1)\n"
    )
    subprocess.run(
        [sys.executable, "-c", probe, address, str(count)], env=_env(), check=True, timeout=120
    )


@pytest.fixture(scope="module")
def cluster():
    """A head (node_a) and a second node (node_b) on this machine; stopped at the end."""
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        subprocess.run(
            [RAY, "start", "--head", f"--port={port}", "--num-cpus=1", "--include-dashboard=false",
             "--disable-usage-stats", "--resources", json.dumps({"sharedconv": 1, "node_a": 1})],
            env=_env(), check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        _start_node(address, "node_b")
        _wait_for_nodes(address, 2)
        yield address
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120)


def _as_at_a_terminal() -> None:
    # A job started in the background (`cmd &`, as CI may start the suite) inherits SIGINT
    # ignored, and so would the command: give it the disposition a terminal's Ctrl-C meets.
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _sharedconv(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "sharedconv.harness.cli", *args],
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=_as_at_a_terminal,
        **kwargs,
    )


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "cases.jsonl").read_text().splitlines()]


def _each_case_once(folder: Path, cases: int) -> list[dict]:
    """The run's records, after checking that ``cases`` cases were each recorded once."""
    records = _records(folder)
    counts = Counter(r["case"] for r in records)
    assert len(counts) == cases and set(counts.values()) == {1}, counts
    return records


def _node_ids(folder: Path) -> dict[str, str]:
    """machine id -> the Ray node id it was measured on."""
    meta = json.loads((folder / "run.json").read_text())
    return {mid: m["ray_node_id"] for mid, m in meta["machines"].items()}


def _raylet_of(resource: str):
    import psutil

    for p in psutil.process_iter(["name", "cmdline"]):
        if "raylet" in (p.info["name"] or "") and f"{resource},1" in " ".join(
            p.info["cmdline"] or []
        ):
            return p
    return None


SMALL = ["--backends", "numpy,faulty", "--strategies", "oracle64,ok", "--shape",
         "B=1,C=1..8:x2,H=12,N=2,K=3", "--mode", "forward", "--budget", "0.05", "--threads", "1"]  # fmt: skip
# cases of at least ~1 s each (30 blocks of a 30 ms call): a node is mid-case when it is hit
SLOW = ["--backends", "faulty", "--strategies", "slow", "--shape", "B=1,C=1..32:x2,H=8,N=2,K=3",
        "--mode", "forward", "--budget", "0.05", "--min-samples", "30", "--threads", "1"]  # fmt: skip


def test_a_run_spreads_over_both_nodes_and_records_each_case_once(cluster, tmp_path):
    proc = _sharedconv(
        "run", "--executor", "ray", "--address", cluster, *SMALL,
        "--results", str(tmp_path), "--run-id", "spread",
    )  # fmt: skip
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    records = _each_case_once(tmp_path / "spread", 8)  # 4 problems x 2 strategies
    machines = _node_ids(tmp_path / "spread")
    assert len(machines) == 2 and {r["machine"] for r in records} == set(machines)
    meta = json.loads((tmp_path / "spread" / "run.json").read_text())
    for machine in meta["machines"].values():  # each measured its own roofline and versions
        assert machine["roofline"]["peak_flops"] > 0 and "numpy" in machine["workers"]
    # a problem's candidates ran on one machine: its ranking compares one machine's timings
    by_problem = {}
    for r in records:
        by_problem.setdefault(r["problem"], set()).add(r["machine"])
    assert all(len(m) == 1 for m in by_problem.values()), by_problem
    # the tables and the report name the machine of each ranking
    assert "machine node-" in out
    report = _sharedconv("report", str(tmp_path / "spread"))
    text, _ = report.communicate(timeout=60)
    assert report.returncode == 0 and text.count(", machine node-") == 4, text


def test_nodes_selector_and_verify(cluster):
    proc = _sharedconv(
        "verify", "--executor", "ray", "--address", cluster, "--nodes", "resource:node_b",
        "--backends", "numpy", "--shape", "B=1,C=2,H=8,N=2,K=3", "--mode", "both", "--json",
    )  # fmt: skip
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    records = json.loads(out[out.index("[") :])
    assert len(records) == 4 and {r["status"] for r in records} == {"pass"}
    assert len({r["machine"] for r in records}) == 1  # node_b only
    proc = _sharedconv("verify", "--executor", "ray", "--address", cluster, "--nodes", "nowhere")
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "--nodes 'nowhere' matches no node" in out, out


def test_ctrl_c_leaves_a_run_that_resume_completes_on_the_cluster(cluster, tmp_path):
    folder = tmp_path / "stopped"
    proc = _sharedconv(
        "run", "--executor", "ray", "--address", cluster, *SLOW,
        "--results", str(tmp_path), "--run-id", "stopped",
    )  # fmt: skip
    deadline = time.time() + 180
    while time.time() < deadline:
        if (folder / "cases.jsonl").exists() and len(_records(folder)) >= 1:
            break
        time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("no case finished within 180 s")
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "sharedconv run --resume stopped" in out
    assert json.loads((folder / "run.json").read_text())["status"] == "interrupted"
    before = len(_records(folder))
    assert 1 <= before < 6
    # the stored executor is used again: only the missing cases run, on the cluster
    resumed = _sharedconv("run", "--resume", "stopped", "--results", str(tmp_path))
    out, _ = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, out
    records = _each_case_once(folder, 6)
    assert all(r.get("machine", "").startswith("node-") for r in records)
    assert json.loads((folder / "run.json").read_text())["status"] == "complete"


def test_a_node_lost_mid_case_costs_nothing_the_case_is_retried_on_the_other(cluster, tmp_path):
    import psutil

    folder = tmp_path / "lost"
    proc = _sharedconv(
        "run", "--executor", "ray", "--address", cluster, *SLOW,
        "--results", str(tmp_path), "--run-id", "lost",
    )  # fmt: skip
    raylet = _raylet_of("node_b")
    assert raylet is not None

    # node_b is mid-case once it has a sharedconv worker process at work
    def command(process) -> str:
        # a child that ends while it is looked at (a zombie until reaped, or gone) is no worker
        try:
            return " ".join(process.cmdline())
        except psutil.Error:
            return ""

    deadline = time.time() + 180
    while time.time() < deadline:
        kids = raylet.children(recursive=True)
        if any("sharedconv.harness.worker" in command(k) for k in kids):
            break
        time.sleep(0.1)
    else:
        proc.kill()
        pytest.fail("node_b never started a case")
    time.sleep(0.5)
    for p in [*raylet.children(recursive=True), raylet]:  # the whole node, at once
        with contextlib.suppress(psutil.NoSuchProcess):
            p.kill()
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    records = _each_case_once(folder, 6)
    assert {r["status"] for r in records} == {"pass"}, [r.get("reason") for r in records]
    retried = [r for r in records if r.get("retried_after")]
    assert len(retried) == 1, [(r["case"], r["machine"]) for r in records]
    lost_on = retried[0]["retried_after"].removeprefix("node lost on ")
    assert retried[0]["machine"] != lost_on  # retried on the other node
    # the cluster gets its second node back for whatever runs next
    _start_node(cluster, "node_b")


def test_two_kinds_of_machine_each_run_the_whole_plan_and_compare_side_by_side(
    cluster, tmp_path, monkeypatch
):
    """A third node pinned to one core (taskset) is another kind of machine (1 usable core,
    not 2): each kind runs every case, and the Compare page puts the two machines side by side."""
    if shutil.which("taskset") is None:
        pytest.skip("needs taskset")
    subprocess.run(
        ["taskset", "-c", "1", RAY, "start", f"--address={cluster}", "--num-cpus=1",
         "--disable-usage-stats", "--resources", json.dumps({"sharedconv": 1, "node_c": 1})],
        env=_env(), check=True, capture_output=True, timeout=120,
    )  # fmt: skip
    _wait_for_nodes(cluster, 3)
    proc = _sharedconv(
        "run", "--executor", "ray", "--address", cluster, "--nodes", "resource:node_a,resource:node_c",
        *SMALL, "--results", str(tmp_path), "--run-id", "kinds",
    )  # fmt: skip
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, out
    records = _each_case_once(tmp_path / "kinds", 16)  # 8 cases x 2 kinds
    kinds = Counter(r["machine_kind"] for r in records)
    # the same CPU model, 1 usable core against 2
    assert sorted(k.rsplit("-", 1)[1] for k in kinds) == ["1c", "2c"], kinds
    assert all(n == 8 for n in kinds.values())
    assert all(r["case"].endswith("@" + r["machine_kind"]) for r in records)
    by_kind = {}
    for r in records:
        by_kind.setdefault(r["machine_kind"], set()).add(r["machine"])
    assert all(len(m) == 1 for m in by_kind.values()) and len(set.union(*by_kind.values())) == 2

    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("SHAREDCONV_RESULTS", str(tmp_path))
    pages = Path(__file__).resolve().parent.parent / "dashboard" / "app_pages"
    at = AppTest.from_file(str(pages / "compare.py"), default_timeout=60)
    at.run()  # one run: the Compare page offers its two machines, B the second
    assert not at.exception, at.exception
    machine_a = at.selectbox(key="compare_machine_a").value
    machine_b = at.selectbox(key="compare_machine_b").value
    assert machine_a != machine_b
    assert at.metric[0].value == "8"  # every case in common, case by case
    recommend = AppTest.from_file(str(pages / "recommend.py"), default_timeout=60)
    recommend.run()
    assert not recommend.exception
    assert len(recommend.sidebar.selectbox(key="recommend_machine").options) == 2


def test_without_ray_the_executor_says_how_to_install_it(tmp_path):
    # an environment where `import ray` fails, as without the extra
    (tmp_path / "ray.py").write_text("raise ImportError('No module named ray')\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "sharedconv.harness.cli", "verify", "--executor", "ray",
         "--backends", "numpy", "--shape", "B=1,C=2,H=8,N=2,K=3"],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert "pip install 'sharedconv[ray]'" in out.stderr and "Traceback" not in out.stderr


def test_only_the_cluster_module_imports_ray():
    root = Path(__file__).resolve().parent.parent
    importers = [
        p.relative_to(root).as_posix()
        for folder in ("harness", "backends", "dashboard", "sharedconv")
        for p in (root / folder).rglob("*.py")
        if "import ray" in p.read_text() or "from ray" in p.read_text()
    ]
    assert importers == ["harness/cluster.py"], importers
