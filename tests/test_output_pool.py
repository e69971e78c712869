"""The native kernel's output pool: memory is lent again only when nothing can reach it."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from sharedconv.backends import native_backend as nb
from sharedconv.backends import output_pool
from sharedconv.backends.output_pool import ALIGN, MAX_LENT, OutputPool, limit_from_env
from sharedconv.backends.problem import parse_problem

MIB = 1 << 20


def _address(a: np.ndarray) -> int:
    return a.__array_interface__["data"][0]


def test_an_array_is_lent_aligned_and_shaped_like_np_empty():
    pool = OutputPool(limit=MIB)
    a = pool.empty((3, 5, 7), np.float32)
    assert a.shape == (3, 5, 7) and a.dtype == np.float32 and a.flags.c_contiguous
    assert a.flags.writeable and _address(a) % ALIGN == 0
    b = pool.empty((2,), "float64")
    assert b.dtype == np.float64 and _address(b) % ALIGN == 0
    assert pool.stats()["in_use"] == 3 * 5 * 7 * 4 + 16


@pytest.mark.parametrize("holder", ["array", "view", "memoryview", "strided_view"])
def test_memory_is_not_lent_again_while_anything_reaches_it(holder):
    pool = OutputPool(limit=MIB)
    a = pool.empty((4, 8), np.float32)
    a[:] = 7.0
    if holder == "array":
        kept = a
    elif holder == "view":
        kept = a[1:].T
    elif holder == "memoryview":
        kept = memoryview(a)
    else:
        kept = a.reshape(-1)[::2]
    address = _address(a)
    del a
    b = pool.empty((4, 8), np.float32)
    assert _address(b) != address  # still reachable through `kept`
    b[:] = -1.0
    assert np.all(np.asarray(kept) == 7.0)  # and nothing wrote over it
    del kept
    c = pool.empty((4, 8), np.float32)
    assert _address(c) == address  # the freed buffer comes back, resident
    assert pool.stats()["reuses"] == 1


def test_a_torch_tensor_made_from_a_lent_array_keeps_it():
    torch = pytest.importorskip("torch")
    pool = OutputPool(limit=MIB)
    t = torch.from_numpy(pool.empty((16,), np.float32)).fill_(3.0)
    other = pool.empty((16,), np.float32)
    assert _address(other) != t.data_ptr()
    other[:] = 0.0
    assert float(t.sum()) == 48.0
    ptr = t.data_ptr()
    del t
    assert _address(pool.empty((16,), np.float32)) == ptr


def test_in_use_and_peak_follow_the_arrays():
    pool = OutputPool(limit=MIB)
    a = pool.empty((256,), np.float32)  # 1 KiB
    assert pool.reset_peak() == 1024
    b = pool.empty((512,), np.float32)  # 2 KiB
    del b
    c = pool.empty((128,), np.float32)  # 512 B: b's buffer was given back first
    assert pool.stats()["peak"] == 1024 + 2048
    assert pool.stats()["in_use"] == 1024 + 512
    del a, c
    assert pool.reset_peak() == 0


def test_free_buffers_over_the_limit_are_dropped_oldest_first():
    pool = OutputPool(limit=3 * 1024)
    arrays = [pool.empty((n,), np.uint8) for n in (1024, 2048, 1536)]
    del arrays
    pool.reset_peak()  # the books: all three free, 4.5 KiB over a 3 KiB limit
    stats = pool.stats()
    assert stats["free_bytes"] == 1536  # the 1 KiB and 2 KiB ones, the oldest, went
    kept = pool.empty((1536,), np.uint8)
    assert pool.stats()["reuses"] == 1 and pool.stats()["free_bytes"] == 0
    del kept


def test_outputs_a_caller_keeps_are_let_go_past_a_bound():
    # a caller that keeps every output (a list of every batch's) does not make each lend look
    # at all of them: past MAX_LENT the oldest are the caller's, intact, and never lent again
    pool = OutputPool(limit=MIB)
    kept = []
    for i in range(MAX_LENT + 40):
        a = pool.empty((16,), np.float32)
        a[:] = i
        kept.append(a)
    # (followed: MAX_LENT after a lend's look, and the one it lends)
    assert len(pool._lent) == MAX_LENT + 1 and pool.stats()["in_use"] == (MAX_LENT + 1) * 64
    del kept[:30]  # let go before: freed as any array, not given back to the pool
    pool.empty((16,), np.float32)
    assert pool.stats()["reuses"] == 0
    assert all(np.all(a == 30 + i) for i, a in enumerate(kept))


def test_a_limit_of_zero_keeps_nothing():
    pool = OutputPool(limit=0)
    a = pool.empty((64,), np.float32)
    del a
    pool.empty((64,), np.float32)
    assert pool.stats()["reuses"] == 0 and pool.stats()["free_bytes"] == 0


def test_threads_never_share_a_buffer():
    pool = OutputPool(limit=64 * MIB)
    bad: list[str] = []

    def work(i: int) -> None:
        for step in range(300):
            a = pool.empty((1024,), np.float32)
            a[:] = i * 1000 + step
            if not np.all(a == i * 1000 + step):  # another thread wrote into it
                bad.append(f"thread {i} step {step}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not bad
    assert pool.stats()["reuses"] > 0


def test_a_lent_buffer_is_held_before_another_thread_can_look(monkeypatch):
    # while one lend makes its array, another thread asks for the same size: it must wait, and
    # get other memory (were the array made after the lock, the other thread would find the
    # buffer held by the pool alone and lend it a second time)
    pool = OutputPool(limit=MIB)
    free = pool.empty((16,), np.float32)
    del free  # a free buffer of that size, for both to want
    other: dict = {}
    first = True

    def slow_view(*args):
        nonlocal first
        if first:
            first = False
            t = threading.Thread(target=lambda: other.update(a=pool.empty((16,), np.float32)))
            t.start()
            t.join(0.3)
            other["waited"] = t.is_alive()
            other["thread"] = t
        return np.ndarray(*args)

    monkeypatch.setattr(output_pool, "_view", slow_view)
    mine = pool.empty((16,), np.float32)
    other["thread"].join(5)
    assert other["waited"], "the other thread lent while this lend was making its array"
    assert _address(other["a"]) != _address(mine)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", None), ("0", 0), ("1073741824", 1 << 30), ("1e9", 10**9)],
)
def test_the_limit_comes_from_the_environment(text, expected):
    got = limit_from_env({"SHAREDCONV_NATIVE_POOL_BYTES": text})
    assert got == (output_pool.default_limit() if expected is None else expected)


def test_the_default_limit_is_a_quarter_of_the_memory_and_at_least_2_gib(monkeypatch):
    pages = {"SC_PAGE_SIZE": 4096}
    monkeypatch.setattr(output_pool.os, "sysconf", lambda name: pages[name])
    pages["SC_PHYS_PAGES"] = (24 << 30) // 4096  # this machine: 24 GiB
    assert output_pool.default_limit() == 6 << 30  # the seed's 3.07 GB output is kept
    pages["SC_PHYS_PAGES"] = (4 << 30) // 4096
    assert output_pool.default_limit() == 2 << 30


@pytest.mark.parametrize(("text", "says"), [("lots", "not a number"), ("-5", "negative")])
def test_a_bad_limit_is_refused_with_the_fix(text, says, monkeypatch):
    with pytest.raises(ValueError, match=says):
        limit_from_env({"SHAREDCONV_NATIVE_POOL_BYTES": text})
    if nb.NativeBackend().available():
        return
    monkeypatch.setenv("SHAREDCONV_NATIVE_POOL_BYTES", text)
    backend = nb.NativeBackend()
    reason = backend.supports(
        parse_problem("B=1,C=2,H=8,W=8,N=2,K=3"),
        backend.strategy("direct_pooled"),
        "cpu",
        "forward",
    )
    assert reason and "SHAREDCONV_NATIVE_POOL_BYTES" in reason and says in reason


@pytest.mark.skipif(bool(nb.NativeBackend().available()), reason="the native kernel is not built")
def test_the_pooled_strategy_reuses_its_outputs_and_reports_them():
    problem = parse_problem("B=2,C=4,H=16,W=16,N=4,K=3")
    rng = np.random.default_rng(0)
    arrays = {
        "x": rng.standard_normal(problem.x_shape).astype(np.float32),
        "w": rng.standard_normal(problem.w_shape).astype(np.float32),
        "b": rng.standard_normal((problem.N,)).astype(np.float32),
        "dy": rng.standard_normal(problem.y_shape).astype(np.float32),
    }
    backend = nb.NativeBackend()
    backend.configure(2, "cpu")
    plain = backend.prepare(problem, arrays, backend.strategy("direct"), "cpu", "train")
    pooled = backend.prepare(problem, arrays, backend.strategy("direct_pooled"), "cpu", "train")
    first = pooled()
    for got, want in zip(first, plain(), strict=True):
        np.testing.assert_array_equal(got, want)
    addresses = [_address(a) for a in first]
    del first, got, want  # the loop's names held the last pair
    again = pooled()
    assert [_address(a) for a in again] == addresses  # the same resident memory, lent again
    del again
    # the books of one call: exactly its outputs (y, dx, dw, db)
    outputs = (
        int(np.prod(problem.y_shape)) + int(np.prod(problem.x_shape)) + 9 * problem.N + problem.N
    ) * 4
    memory = backend.device_memory(pooled)
    assert memory["peak_bytes"] == outputs and memory["adds_to_rss"]
    assert backend.device_memory(plain) is None  # the RSS sees np.empty's memory
