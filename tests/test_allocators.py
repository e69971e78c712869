"""The C allocator as a measured dimension: faults counted, each choice really in effect in
the worker (checked by behaviour and by the library serving malloc, not by the flag), a
missing library a clear error, and a case's faults independent of what ran before it."""

from __future__ import annotations

import mmap
import os

import numpy as np
import pytest
from click.testing import CliRunner
from sharedconv.backends.problem import parse_problem
from sharedconv.harness import allocators
from sharedconv.harness.cli import cli
from sharedconv.harness.execute import Plan, execute
from sharedconv.harness.timing import FAULTS_FLAG_PER_CALL, steady_state
from sharedconv.harness.worker import WorkerProcess

PAGE = mmap.PAGESIZE
OPTIONS = {"budget": 0.05, "min_samples": 3, "max_samples": 8, "precision": 0.5}


def test_a_call_that_maps_fresh_memory_faults_on_every_page():
    size = 8 * 2**20

    def fresh():
        m = mmap.mmap(-1, size)  # a new anonymous mapping: every page faults when touched
        for i in range(0, size, PAGE):
            m[i] = 1
        m.close()

    faults = steady_state(fresh, lambda _: None, OPTIONS)["faults"]
    assert faults["minor_per_call"] >= 0.9 * size / PAGE, faults
    assert faults["flagged"]
    assert faults["kernel_share"] is not None and 0 <= faults["kernel_share"] <= 1


def test_a_call_that_reuses_its_memory_does_not_fault():
    buf = np.zeros(2 * 2**20, dtype=np.float32)

    def reuse():
        buf.fill(1.0)  # the same 8 MiB, already mapped

    faults = steady_state(reuse, lambda _: None, OPTIONS)["faults"]
    assert faults["minor_per_call"] < 8, faults
    assert not faults["flagged"]


def _installed(name: str):
    why = allocators.get(name).available()
    return pytest.param(name, id=name, marks=pytest.mark.skipif(why is not None, reason=why or ""))


# (allocator, library that must serve malloc in the worker, reuses a freed 64 MiB block)
EXPECTED = {
    "jemalloc": ("jemalloc", True),
    "tcmalloc": ("tcmalloc", True),
    "glibc-tuned": ("glibc", True),
    "system": ("glibc", False),  # glibc's defaults: a 64 MiB block is a fresh mapping
    "fixed": ("glibc", False),  # over the 32 MiB threshold too
}


@pytest.mark.parametrize("name", [_installed(n) for n in EXPECTED])
def test_each_allocator_is_really_in_effect_in_the_worker(name, monkeypatch):
    for key in ("LD_PRELOAD", "MALLOC_MMAP_MAX_", "MALLOC_ARENA_MAX", "MALLOC_CONF"):
        monkeypatch.delenv(key, raising=False)
    with WorkerProcess("numpy", threads=1, malloc=name) as worker:
        probe = worker.ensure()["facts"]["allocator"]
    serving, reuses = EXPECTED[name]
    assert probe["serving"] == serving, probe
    assert probe["reuses_freed"] == reuses, probe
    library = allocators.get(name).library
    if library:
        assert library.split(".so")[0] in probe["library"], probe


def test_a_page_of_bookkeeping_does_not_make_a_reusing_allocator_look_fresh():
    # CI once probed jemalloc's reuse at 1 fault: one page of the allocator's own, not a
    # fresh mapping (16,384 faults; about 32 under transparent huge pages)
    assert allocators.reuses_freed(16384, 0) and allocators.reuses_freed(16384, 1)
    assert allocators.reuses_freed(0, 0)  # the first block was not fresh either
    assert not allocators.reuses_freed(16384, 16384) and not allocators.reuses_freed(32, 32)
    assert not allocators.reuses_freed(-1, -1)
    words = allocators.probe_text
    probe = {"serving": "jemalloc", "first_touch_faults_64MiB": 16384}
    assert words({**probe, "reuse_faults_64MiB": 1, "reuses_freed": True}).endswith(
        "a freed 64 MiB block is reused (1 page fault against 16,384 on first touch)"
    )
    assert words({**probe, "reuse_faults_64MiB": 0, "reuses_freed": True}).endswith(
        "reused without faults"
    )
    fresh = {"serving": "glibc", "reuse_faults_64MiB": 16384, "reuses_freed": False}
    assert words(fresh).endswith("faults 16,384 pages when reused")
    # a run from before the first-touch count: only 0 faults read as reuse
    assert words({"serving": "glibc", "reuse_faults_64MiB": 0}).endswith("without faults")
    assert words({"serving": "glibc", "reuse_faults_64MiB": -1}).endswith("not measured")


def test_a_named_allocator_replaces_an_inherited_preload(monkeypatch):
    if allocators.get("jemalloc").available() or allocators.get("tcmalloc").available():
        pytest.skip("needs jemalloc and tcmalloc installed")
    monkeypatch.setenv("LD_PRELOAD", allocators.get("tcmalloc").library_path())
    with WorkerProcess("numpy", threads=1, malloc="jemalloc") as worker:
        assert worker.ensure()["facts"]["allocator"]["serving"] == "jemalloc"


def test_a_missing_allocator_library_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SHAREDCONV_JEMALLOC_LIBRARY", str(tmp_path / "nope.so"))
    result = CliRunner().invoke(
        cli, ["run", "-b", "numpy", "--shape", "C=2,H=8,N=2,K=3", "--malloc", "jemalloc"]
    )
    assert result.exit_code == 2
    assert "libjemalloc.so.2, which is not installed here" in result.output
    assert "apt-get install libjemalloc2" in result.output
    assert "Traceback" not in result.output
    # the default falls back to the tuned glibc, which needs nothing installed
    assert allocators.parse(None) == ["glibc-tuned"]


def test_an_unknown_allocator_names_the_valid_ones():
    result = CliRunner().invoke(cli, ["verify", "-b", "numpy", "--malloc", "mimalloc"])
    assert result.exit_code == 2
    assert "unknown allocator 'mimalloc'" in result.output
    assert "jemalloc, tcmalloc, glibc-tuned, system, fixed" in result.output


def _faults_of_small_case(first: list[str], malloc: str) -> float:
    """Faults per call of one case (y of 39 MiB, over glibc's largest mmap threshold),
    measured in a worker that first ran the problems in ``first``."""
    small = parse_problem("B=4,C=40,H=64,W=64,N=16,K=3")
    plan = Plan(
        backends=["numpy"],
        problems=[*(parse_problem(t) for t in first), small],
        modes=["forward"],
        strategies=["oracle32"],
        threads=1,
        mallocs=[malloc],
        timing={**OPTIONS, "budget": 0.2},
    )
    records: list[dict] = []
    execute(plan, records.append)
    (record,) = [r for r in records if r["problem"] == small.to_text()]
    assert record["status"] == "pass", record
    return record["timing"]["faults"]["minor_per_call"]


def test_a_cases_faults_do_not_depend_on_what_ran_before_it_under_the_default():
    default = allocators.default()
    fresh = _faults_of_small_case([], default)
    after_large = _faults_of_small_case(["B=8,C=64,H=64,W=64,N=16,K=3"], default)
    assert fresh < FAULTS_FLAG_PER_CALL and after_large < FAULTS_FLAG_PER_CALL, (
        fresh,
        after_large,
    )
    # the mechanism the default removes: glibc's defaults map the output afresh every call
    assert _faults_of_small_case([], "system") >= FAULTS_FLAG_PER_CALL


def _one_call_under(name: str, measure: str, body: str) -> tuple[int, str]:
    """``measure`` (a function of harness.timing) of one warm call under the allocator
    ``name``, in a fresh Python process: the peak it read and its method."""
    import subprocess
    import sys

    allocator = allocators.get(name)
    if allocator.available():
        pytest.skip(f"needs {name} installed")
    code = (
        "import threading\n"
        "import numpy as np\n"
        f"from sharedconv.harness.timing import {measure} as measure\n"
        f"{body}"
        "for _ in range(50): call()\n"
        "r = measure(call, lambda _: None)\n"
        "print(r['peak_bytes']); print(r['method'])\n"
    )
    env = allocator.environment(dict(os.environ))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr[-2000:]
    peak, method = out.stdout.strip().splitlines()
    return int(peak), method


def test_memory_of_one_call_sees_a_small_block_jemallocs_thread_cache_held():
    """jemalloc keeps freed blocks up to 32 KiB in a per-thread cache that a call reuses
    without touching new pages; the measurement flushes it first (numba's 24 KiB dx was
    invisible before)."""
    peak, method = _one_call_under(
        "jemalloc",
        "measure_memory",
        "def call():\n"
        "    a = np.ones(6144, dtype=np.float32)  # 24 KiB, written\n"
        "    b = np.ones(6144, dtype=np.float32)\n"
        "    return a, b\n",
    )
    assert "thread cache flushed" in method
    assert peak >= 2 * 24 * 1024, peak


def test_tcmalloc_s_hooks_count_a_call_s_small_blocks_in_every_thread():
    """tcmalloc serves freed small blocks from size-class lists it never hands back, so a warm
    call's RSS does not grow (10 train steps of the smoke suite read unknown memory under
    tcmalloc); its new/delete hooks (harness/malloc_peak.c) count them, in every thread; a
    block the process held before the call and freed in it does not lower the count, and an
    address reused thousands of times in one call does not overflow it."""
    peak, method = _one_call_under(
        "tcmalloc",
        "allocator_peak",
        "held = [np.ones(2**20, np.float32) for _ in range(60)]\n"
        "def call():\n"
        "    held.pop()  # 4 MiB held before the call, freed in it: not the call's\n"
        "    a = np.ones(6144, dtype=np.float32)  # 24 KiB, written\n"
        "    for _ in range(2000):\n"
        "        t = np.ones(8192, np.float32)  # one address, allocated again and again\n"
        "    got = []\n"
        "    t = threading.Thread(target=lambda: got.append(np.ones(2**18, np.float32)))\n"
        "    t.start(); t.join()  # 1 MiB allocated by another thread\n"
        "    return a, got[0]\n",
    )
    assert method.startswith("tcmalloc's peak") and "every thread" in method
    assert 24 * 1024 + 2**20 <= peak < 4 * 2**20, peak
