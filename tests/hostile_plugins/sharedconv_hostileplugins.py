"""Plugins that misbehave where sharedconv loads them, not where it runs cases."""

from __future__ import annotations

import subprocess
import sys
import time

from sharedconv.backends import oracle
from sharedconv.backends.api import Backend, Strategy

ONE = (Strategy("direct", "the oracle's algorithm"),)


class _Oracle(Backend):
    strategies = ONE

    def prepare(self, problem, arrays, strategy, device, mode):
        return lambda: (oracle.forward(problem, arrays["x"], arrays["w"], arrays.get("b")),)


class HangAvailable(_Oracle):
    name = "hang_available"

    def available(self):
        time.sleep(3600)


class RaiseAvailable(_Oracle):
    name = "raise_available"

    def available(self):
        raise RuntimeError("the plugin's own bug")


class Spawner(_Oracle):
    """Leaves a grandchild behind in every worker (a framework's helper process would)."""

    name = "spawner"

    def prepare(self, problem, arrays, strategy, device, mode):
        marker = f"sharedconv-spawner-{problem.slug()}"
        subprocess.Popen([sys.executable, "-c", f"import time; time.sleep(600)  # {marker}"])
        return super().prepare(problem, arrays, strategy, device, mode)
