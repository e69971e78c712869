"""pytest-benchmark suites over backends x strategies x problems x modes.

    sharedconv pytest-bench --sharedconv-suite seed --benchmark-json out.json

runs one pytest process per backend and merges the JSON; or one backend directly:

    pytest "$(sharedconv pytest-bench --path)" --benchmark-enable --sharedconv-backend torch --sharedconv-suite seed

Each case is verified against the float64 oracle before it is timed (a mismatch fails), the
device is synchronized inside the measured call, and extra_info carries FLOPs, GFLOP/s,
layouts, dtype, threads and the verification error. Benchmarks are grouped by problem.
"""


def test_shared_conv(sharedconv_benchmark):
    sharedconv_benchmark()
