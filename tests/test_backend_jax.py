"""The JAX backend's memory accounting (its strategies against the oracle: test_backends.py)."""

from __future__ import annotations


class _Plan:
    temp_size_in_bytes = 1000
    output_size_in_bytes = 576
    alias_size_in_bytes = 0


class _Compiled:
    def memory_analysis(self):
        return _Plan()


def _stats(*readings):
    it = iter(readings)
    return lambda: next(it)


def test_device_peak_is_the_calls_own_when_it_raises_the_process_peak():
    from sharedconv.backends.jax_backend import device_peak

    got = device_peak(
        _stats(
            {"bytes_in_use": 100, "peak_bytes_in_use": 500},
            {"bytes_in_use": 100, "peak_bytes_in_use": 900},
        ),
        lambda: None,
        _Compiled(),
    )
    assert got["peak_bytes"] == 800 and "raised" in got["method"]


def test_device_peak_falls_back_to_xlas_plan_under_an_earlier_peak():
    from sharedconv.backends.jax_backend import device_peak

    stats = [{"bytes_in_use": 100, "peak_bytes_in_use": 5000}] * 2
    got = device_peak(_stats(*stats), lambda: None, _Compiled())
    assert got["peak_bytes"] == 1576 and "memory plan" in got["method"]
    # no plan: the process peak, labelled as the upper bound it is
    got = device_peak(_stats(*stats), lambda: None, None)
    assert got["peak_bytes"] == 4900 and "upper bound" in got["method"]


def test_prepared_calls_carry_their_compiled_executable():
    """device_memory reads XLA's plan from the prepared call (checked on the CPU here)."""
    import subprocess
    import sys

    code = (
        "from sharedconv.backends.registry import load_backend\n"
        "from sharedconv.backends.problem import parse_problem, make_inputs\n"
        "b = load_backend('jax'); b.configure(1, 'cpu')\n"
        "p = parse_problem('B=1,C=2,H=8,W=8,N=2,K=3')\n"
        "for mode in ('forward', 'train'):\n"
        "    s = b.strategies[0]\n"
        "    fn = b.prepare(p, make_inputs(p, 0, mode), s, 'cpu', mode)\n"
        "    plan = fn.compiled.memory_analysis()\n"
        "    print(mode, plan.output_size_in_bytes)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    sizes = dict(line.split() for line in out.stdout.strip().splitlines())
    y_bytes = 1 * 2 * 2 * 6 * 6 * 4
    assert int(sizes["forward"]) == y_bytes
    assert int(sizes["train"]) > y_bytes  # y, dx, dw, db
