#!/usr/bin/env python3
"""Layers of one strategy against each other, paired: how far apart two instances of the same
layer read on this machine (the noise floor of docs/layers.md's rows).

    python scripts/bench_layer_instances.py keras-tensorflow "B=1,C=32,H=128,W=128,N=8,K=5,padding=same" \\
        --mode train --pinned conv3d,conv3d,conv3d,conv3d

In one process (the framework's, as scripts/bench_layers.py makes it): a layer with
``strategy="auto"`` is built and tuned on a fresh decision cache, then one layer per name in
``--pinned`` (a name may repeat); every layer reads the same input tensors. They are timed in
alternating blocks of about 10 ms each, a new random order every cycle, for ``--seconds``;
each is given as the median per-cycle ratio to the first pinned layer, with a 95% bootstrap
interval (``harness.stats.paired_ratio``). Run it under the allocator the benchmark used
(``sharedconv.harness.allocators``: e.g. ``LD_PRELOAD`` of jemalloc), or none.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("framework", help="torch, jax, keras-tensorflow, keras-jax or keras-torch")
    parser.add_argument("problem", help='e.g. "B=2,C=100,H=64,W=64,N=16,K=7"')
    parser.add_argument("--mode", default="train", choices=["forward", "train"])
    parser.add_argument("--pinned", required=True, help="strategy names, comma-separated")
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    if args.framework.startswith("keras-"):
        os.environ["KERAS_BACKEND"] = args.framework.removeprefix("keras-")
    os.environ["SHAREDCONV_CACHE_DIR"] = tempfile.mkdtemp(prefix="layer-instances-")

    from bench_layers import (
        BLOCK_S,
        MIN_CYCLES,
        JaxCalls,
        KerasCalls,
        TorchCalls,
        alternating_blocks,
    )
    from sharedconv.backends.problem import make_inputs, parse_problem
    from sharedconv.harness.stats import paired_ratio

    problem = parse_problem(args.problem)
    arrays = make_inputs(problem, seed=0, mode=args.mode)
    maker = {"torch": TorchCalls, "jax": JaxCalls}.get(args.framework, KerasCalls)("cpu")
    auto, choice = maker.auto(problem, arrays, args.mode)
    print(f"auto picked {choice.strategy} ({choice.source})")
    calls = {"auto": auto}
    for i, name in enumerate(args.pinned.split(",")):
        calls[f"{name} #{i + 1}"] = maker.pinned(problem, arrays, args.mode, name)
    one = {}
    for name, call in calls.items():
        maker.sync(call())
        t = time.perf_counter()
        maker.sync(call())
        one[name] = time.perf_counter() - t
    sizes = {n: max(1, round(BLOCK_S / max(s, 1e-9))) for n, s in one.items()}
    per_call = alternating_blocks(calls, maker.sync, sizes, args.seconds, MIN_CYCLES, 10**6)
    first = list(calls)[1]
    print(f"{args.framework} {args.problem} {args.mode}, against {first}:")
    for name, times in per_call.items():
        ratio, low, high = paired_ratio(times, per_call[first])
        print(f"  {name:24s} {ratio:.3f} ({low:.3f}-{high:.3f}), {len(times)} cycles")


if __name__ == "__main__":
    main()
