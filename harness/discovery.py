"""Plugins are tried in a child process before this one loads them.

A plugin runs its own code at import and in ``available()``; one that segfaults, hangs or
raises there must not take ``sharedconv backends`` or a run down. Every backend a command
needs is first imported and asked ``available()`` in one child process with a deadline; if
that child dies or hangs, each backend it did not answer for is tried alone, so the culprit is
named and the rest still load. Only backends that passed are then loaded here.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterable
from functools import cache

from .worker import kill_group, signal_name

# seconds a plugin gets to import and answer available(), in the child
PROBE_TIMEOUT_S = float(os.environ.get("SHAREDCONV_PLUGIN_TIMEOUT", "30"))

_PROBE = r"""
import json, sys
from sharedconv.backends.registry import UnknownBackendError, load_backend
for name in sys.argv[1:]:
    try:
        load_backend(name).available()
        answer = None
    except UnknownBackendError:  # registered only in the parent (e.g. by a test): not ours
        answer = None
    except BaseException as e:  # the parent decides what a failure means
        kind = "" if type(e).__name__ == "BackendLoadError" else f"{type(e).__name__}: "
        answer = f"{kind}{e}"[:500]
    print(json.dumps([name, answer]), flush=True)
"""


def _child(names: list[str], timeout: float) -> tuple[dict[str, str | None], str | None]:
    """Answers per name (None: loaded and answered), and why the child ended early, if it did."""
    proc = subprocess.Popen(
        [sys.executable, "-c", _PROBE, *names],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # its own group: a hang is killed with whatever it started
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
        failure = None if proc.returncode == 0 else _death(proc.returncode)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        out, _ = proc.communicate()
        failure = f"did not answer within {timeout:.0f} s (hangs at import or in available())"
    answers: dict[str, str | None] = {}
    for line in out.splitlines():
        try:
            name, answer = json.loads(line)
        except (ValueError, TypeError):
            continue
        answers[name] = answer
    return answers, failure


def _death(code: int) -> str:
    if code < 0:
        return f"the process died of {signal_name(-code)} at import or in available()"
    return f"the process exited with code {code} at import or in available()"


@cache
def _faults(names: tuple[str, ...], timeout: float) -> dict[str, str]:
    answers, failure = _child(list(names), timeout)
    # a backend that raised (at import or in available()) is reported with its error
    faults = {name: answer for name, answer in answers.items() if answer is not None}
    if failure is not None:
        for name in names:
            if name in answers:
                continue
            alone, why = _child([name], timeout)
            if why is not None:
                faults[name] = why
            elif alone.get(name):
                faults[name] = alone[name]
    return faults


def faults(names: Iterable[str], timeout: float = PROBE_TIMEOUT_S) -> dict[str, str]:
    """Backends that crash or hang when imported or asked ``available()``, with the reason.
    Cached per process: a run plans its cases more than once."""
    return _faults(tuple(sorted(set(names))), timeout)
