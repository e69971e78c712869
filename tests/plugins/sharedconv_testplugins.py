"""Backends for sharedconv's own tests, registered through a real entry point.

``throwaway`` is a complete backend in a few lines (a new backend is one module and one
entry point). ``faulty`` misbehaves on purpose so the harness's fault paths can be tested.
"""

from __future__ import annotations

import ctypes
import os
import time

import numpy as np
from sharedconv.backends import oracle
from sharedconv.backends.api import Backend, Strategy


class ThrowawayBackend(Backend):
    name = "throwaway"
    strategies = (Strategy("direct", "the oracle's algorithm in float64"),)

    def prepare(self, problem, arrays, strategy, device, mode):
        return lambda: _correct(problem, arrays, mode)


def _correct(problem, arrays, mode):
    y = oracle.forward(problem, arrays["x"], arrays["w"], arrays.get("b"))
    if mode != "train":
        return (y,)
    g = oracle.gradients(problem, arrays["x"], arrays["w"], arrays["dy"])
    return (y, g["dx"], g["dw"], *([g["db"]] if problem.bias else []))


class FaultyBackend(Backend):
    name = "faulty"
    strategies = (
        Strategy("ok", "correct"),
        Strategy("segfault", "dies of SIGSEGV when called"),
        Strategy("hang", "sleeps forever when called"),
        Strategy("raise", "raises a Python error when prepared"),
        Strategy("wrong", "off by a little in one channel"),
        Strategy("wrong_layout", "declares BCNHW but returns BNCHW"),
        Strategy("slow", "correct, but sleeps 30 ms per call"),
        Strategy("mutates", "scribbles on its input array"),
        Strategy(
            "forward_only",
            "correct; forward only, claims the seed's option 1, refuses float16 with markup",
            differentiable=False,
            seed_option=1,
            supports_fn=lambda p, device, mode: (
                "refuses float16: <script>alert(1)</script> | [x](http://203.0.113.9/)"
                if p.dtype == "float16"
                else None
            ),
        ),
    )

    def configure(self, threads, device):
        if os.environ.get("SHAREDCONV_TEST_DIE_AT_HELLO"):
            os._exit(3)  # the worker dies when it starts, after the harness's import probe
        return {}

    def prepare(self, problem, arrays, strategy, device, mode):
        name = strategy.name
        if name == "raise":
            raise ValueError("this strategy always fails to prepare")

        def call():
            if name == "segfault":
                ctypes.string_at(0)
            if name == "hang":
                time.sleep(3600)
            if name == "slow":
                time.sleep(0.03)
            if name == "mutates":
                arrays["x"][...] = 0.0
            out = list(_correct(problem, arrays, mode))
            if name == "wrong":
                out[0] = out[0].copy()
                out[0][:, -1] += 1e-3 * np.abs(out[0]).max()
            if name == "wrong_layout":
                out[0] = np.ascontiguousarray(out[0].transpose(0, 2, 1, 3, 4))
            return tuple(out)

        return call

    def versions(self):
        return {"pid": str(os.getpid())}
