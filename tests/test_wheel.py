"""The package works from its wheel, without the source tree.

The wheel is built from this checkout and installed (``--no-deps``, offline) into a fresh
virtual environment that borrows only the dependencies from the test environment (a ``.pth``
line to its site-packages; the checkout's editable finder is not processed through it). Every
command then runs from a folder outside the checkout and must import sharedconv from the
wheel: `run` (numpy), `recommend`, `pytest-bench` (the benchmarks ship in the package) and
`dashboard` (health check, and SIGTERM stops the server, which holds no port afterwards).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import click
import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def wheel_env(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("wheel")
    build = subprocess.run(
        # -v: pip shows the build backend's output only when verbose; the warnings are in it
        [sys.executable, "-m", "pip", "wheel", "-v", "--no-deps", "--no-build-isolation", "-w",
         str(tmp / "dist"), str(REPO)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr[-2000:]
    # no setuptools warning screens (data folders that are not declared packages)
    assert "running bdist_wheel" in build.stdout + build.stderr  # the backend's output is here
    assert "Package would be ignored" not in build.stdout + build.stderr
    (wheel,) = (tmp / "dist").glob("sharedconv-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    site = Path(
        subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True).strip()
    )  # fmt: skip
    # where this test environment's dependencies live (click's folder: not this checkout)
    (site / "deps.pth").write_text(str(Path(click.__file__).resolve().parent.parent) + "\n")
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert install.returncode == 0, install.stderr[-2000:]
    work = tmp / "work"  # outside the checkout: nothing resolves to the source tree
    work.mkdir()
    return {"py": py, "bin": venv / "bin", "work": work, "site": site}


def _run(env: dict[str, Path], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SHAREDCONV_RESULTS")}
    clean["PATH"] = f"{env['bin']}{os.pathsep}{clean.get('PATH', '')}"
    return subprocess.run(
        [str(env["bin"] / "sharedconv"), *args],
        capture_output=True, text=True, cwd=env["work"], env=clean, timeout=timeout,
    )  # fmt: skip


def test_the_wheel_imports_from_its_own_install(wheel_env):
    where = subprocess.check_output(
        [str(wheel_env["py"]), "-c", "import sharedconv.harness.cli as c; print(c.__file__)"],
        cwd=wheel_env["work"],
        text=True,
    ).strip()
    assert where.startswith(str(wheel_env["site"])), where
    assert not where.startswith(str(REPO))


def test_run_recommend_and_pytest_bench_from_the_wheel(wheel_env):
    shape = "B=1,C=2,H=8,W=8,N=2,K=3"
    ran = _run(
        wheel_env, "run", "-b", "numpy", "--shape", shape, "--mode", "forward",
        "--budget", "0.05", "--run-id", "fromwheel",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    assert (wheel_env["work"] / "results" / "fromwheel" / "cases.jsonl").is_file()
    answer = _run(wheel_env, "recommend", "--shape", shape)
    assert answer.returncode == 0, answer.stdout + answer.stderr
    assert "Use numpy/" in answer.stdout
    out = wheel_env["work"] / "bench.json"
    bench = _run(
        wheel_env, "pytest-bench", "-b", "numpy", "--sharedconv-mode", "forward",
        "--benchmark-max-time=0.02", "--benchmark-min-rounds=2", "--benchmark-json", str(out), "-q",
    )  # fmt: skip
    assert bench.returncode == 0, bench.stdout[-2000:] + bench.stderr[-2000:]
    assert json.loads(out.read_text())["benchmarks"], "no benchmark ran from the shipped suite"


def test_the_native_kernel_ships_built_in_the_wheel(wheel_env):
    # the wheel carries the compiled kernel (built at install time) and works without the
    # source tree: verify runs it through a worker against the oracle
    libs = list((wheel_env["site"] / "sharedconv" / "backends").glob("_native_*.so"))
    assert libs, "no kernel library in the wheel"
    # and tcmalloc's counter of a call's bytes (the memory measurement under tcmalloc)
    assert list((wheel_env["site"] / "sharedconv" / "harness").glob("_malloc_peak*.so"))
    shape = "B=1,C=2,H=9,W=30,N=5,K=3"
    ran = _run(wheel_env, "verify", "-b", "native", "--shape", shape)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-2000:]
    # every strategy of the kernel (direct, direct_pooled), forward and train
    from sharedconv.backends.native_backend import TABLE

    assert f"{2 * len(TABLE.strategies)} passed, 0 failed" in ran.stdout, ran.stdout[-2000:]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_dashboard_from_the_wheel_answers_and_stops_with_sigterm(wheel_env):
    port = _free_port()
    clean = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.Popen(
        [str(wheel_env["bin"] / "sharedconv"), "dashboard", "--port", str(port)],
        cwd=wheel_env["work"], env=clean, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        deadline, health = time.monotonic() + 90, None
        while time.monotonic() < deadline and health != "ok":
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/_stcore/health", timeout=2
                ) as r:
                    health = r.read().decode()
            except OSError:
                time.sleep(0.5)
        assert health == "ok", proc.stdout.read1(4000) if proc.poll() is not None else "no answer"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) is not None
        # the command was the server: nothing is left holding the port
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind(("127.0.0.1", port))
    finally:
        if proc.poll() is None:
            proc.kill()
