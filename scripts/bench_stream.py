"""What the native kernel's non-temporal output stores buy, and where (docs/performance.md).

    python scripts/bench_stream.py [--malloc system] [--seconds 6] [--json FILE]

The kernel's forward can write its output in place with ordinary stores, or compute it into a
staging buffer in the L2 cache and copy it out with non-temporal stores, which send the lines
to memory without reading them first (an ordinary store to a line not in the cache reads it
from memory, so an output larger than the cache crosses the memory bus twice). For each
allocator setting, one child process times both on the floor benchmark's problems, forward
and train, float32, 2 threads, the outputs from the kernel's pool (so the allocator's page
faults are not in the comparison: scripts/bench_output_pool.py measures those), in
alternating blocks of about 20 ms (scripts/bench_output_pool.py's), and reports each one's
median per call, the paired ratio ordinary / streamed with its 95% interval (above 1: the
streamed stores are faster), and what `SHAREDCONV_NATIVE_STREAM=auto` (the default) picks
for the problem: streamed when the output is larger than the last-level cache.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_output_pool import MARK, PROBLEMS, paired_blocks, run  # noqa: E402

VARIANTS = {"ordinary": False, "streamed": True}


def child(seconds: float, threads: int) -> None:
    import numpy as np
    from sharedconv.backends import native_backend as nb
    from sharedconv.backends.problem import make_inputs, parse_problem
    from sharedconv.harness.stats import paired_ratio

    pool = nb.output_pool()
    rows = []
    for text in PROBLEMS:
        problem = parse_problem(text)
        for mode in ("forward", "train"):
            a = make_inputs(problem, 0, mode)
            x, w, b = (np.ascontiguousarray(a[k], dtype=np.float32) for k in ("x", "w", "b"))
            dy = np.ascontiguousarray(a["dy"], dtype=np.float32) if mode == "train" else None

            calls = {
                name: _call(problem, x, w, b, dy, threads, pool, stream)
                for name, stream in VARIANTS.items()
            }
            first = [c() for c in calls.values()]
            if not np.array_equal(first[0][0], first[1][0]):
                sys.exit(f"{text}: the streamed output differs from the ordinary one")
            del first
            per_call, _ = paired_blocks(calls, seconds)
            ratio = paired_ratio(per_call["ordinary"], per_call["streamed"])
            rows.append(
                {
                    "problem": text,
                    "mode": mode,
                    "output_bytes": problem.itemsize * int(np.prod(problem.y_shape)),
                    "auto_streams": nb.stream_outputs(problem),
                    "cycles": len(per_call["ordinary"]),
                    "median_s": {n: float(np.median(v)) for n, v in per_call.items()},
                    "ordinary_over_streamed": [float(v) for v in ratio],
                }
            )
            print(f"{text} {mode}: {ratio[0]:.3f}", file=sys.stderr, flush=True)
    print(
        MARK + json.dumps({"last_level_cache": nb.last_level_cache_bytes(), "rows": rows}),
        flush=True,
    )


def _call(problem, x, w, b, dy, threads, pool, stream):
    from sharedconv.backends import native_backend as nb

    def call():
        y = nb.forward(problem, x, w, b, threads, pool=pool, stream=stream)
        if dy is None:
            return (y,)
        return (y, *nb.backward(problem, x, w, dy, True, threads, pool=pool))

    return call


def render(result: dict) -> str:
    machine = result["machine"]
    lines = [
        f"`{result['command']}` ({result['date']} UTC, {machine.get('cpu_model', '?')}, "
        f"{result['threads']} threads; Python {result.get('python', '?')})",
        "",
    ]
    for malloc, run_ in result["runs"].items():
        llc = run_["last_level_cache"]
        lines += [
            f"Allocator `{malloc}`; the last-level cache {llc / 2**20:.0f} MiB (sysfs):",
            "",
            "| problem | mode | output | ordinary | streamed | ordinary / streamed, paired (95% CI) | auto |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for r in run_["rows"]:
            m = r["median_s"]
            ratio, low, high = r["ordinary_over_streamed"]
            lines.append(
                f"| {r['problem']} | {r['mode']} | {r['output_bytes'] / 2**20:.1f} MiB | "
                f"{m['ordinary'] * 1e3:.3g} ms | {m['streamed'] * 1e3:.3g} ms | "
                f"{ratio:.3f} ({low:.3f}-{high:.3f}) | "
                f"{'streamed' if r['auto_streams'] else 'ordinary'} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--malloc", default="system", help="Allocator settings, one child each.")
    parser.add_argument(
        "--seconds", type=float, default=6.0, help="Alternating blocks per problem and mode."
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, help="Keep the results here.")
    parser.add_argument("--from-json", type=Path, help="Render stored results instead of running.")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.seconds, args.threads)
        return
    if args.from_json:
        result = json.loads(args.from_json.read_text())
    else:
        result = run(
            [m.strip() for m in args.malloc.split(",")], args.seconds, args.threads, __file__
        )
        if args.json:
            args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(render(result))


if __name__ == "__main__":
    main()
