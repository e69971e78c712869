"""Worker processes: one per backend, talking plain JSON lines over pipes.

Frameworks fight over threads and can crash each other, so every backend runs in a process
of its own, started with the same thread settings in its environment before any framework
is imported. A worker that crashes, hangs or is killed costs the case in flight (recorded
with the signal and the tail of its stderr) and nothing else: the next case gets a new one.

Run as ``python -m sharedconv.harness.worker``; the parent side is :class:`WorkerProcess`.
"""

from __future__ import annotations

import contextlib
import gc
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

PROTOCOL = 1


def default_threads() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def thread_env(threads: int, verbose: bool = False) -> dict[str, str]:
    """Environment that fixes every framework's thread pools before it is imported."""
    n = str(threads)
    env = {
        "OMP_NUM_THREADS": n,
        "MKL_NUM_THREADS": n,
        "OPENBLAS_NUM_THREADS": n,
        "NUMEXPR_NUM_THREADS": n,
        "TF_NUM_INTRAOP_THREADS": n,
        "TF_NUM_INTEROP_THREADS": "1",
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "PYTHONUNBUFFERED": "1",
    }
    if not verbose:
        env["TF_CPP_MIN_LOG_LEVEL"] = "2"
        env["TF_ENABLE_ONEDNN_OPTS"] = os.environ.get("TF_ENABLE_ONEDNN_OPTS", "1")
    return env


class WorkerFault(RuntimeError):
    """The worker died or hung; ``status`` is ``crashed`` or ``timeout``."""

    def __init__(
        self, status: str, reason: str, stderr_tail: str = "", signal_name: str | None = None
    ):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.stderr_tail = stderr_tail
        self.signal_name = signal_name

    def record(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "reason": self.reason,
            "signal": self.signal_name,
            "stderr_tail": self.stderr_tail,
        }


@dataclass
class WorkerProcess:
    """A backend's worker, started lazily and restarted after a fault."""

    backend: str
    threads: int
    device: str = "cpu"
    verbose: bool = False
    extra_env: dict[str, str] = field(default_factory=dict)
    malloc: str = "system"  # the C allocator (harness.allocators), applied to the environment
    tf32: bool = False  # float32 may use TF32 on a GPU (Backend.tf32)
    startup_timeout: float = 180.0
    hello: dict[str, Any] | None = None
    _proc: subprocess.Popen | None = None
    _stderr: Any = None
    _buffer: bytes = b""
    starts: int = 0
    _greeting: bool = False  # spawned, its hello sent and not yet read (greet)
    _start_fault: WorkerFault | None = None  # the hello failed in greet: raised at ensure

    # ---- lifecycle --------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        self.spawn()
        return self.greet()

    def spawn(self) -> None:
        """Starts the process and sends its hello without waiting for the answer: several
        workers then import their frameworks at once (:meth:`greet` reads each answer)."""
        self.close()
        from .allocators import get as get_allocator

        env = dict(os.environ)
        env.update(thread_env(self.threads, self.verbose))
        env.update(self.extra_env)
        env = get_allocator(self.malloc).environment(env)
        # lives as long as the worker; closed in close()
        self._stderr = tempfile.TemporaryFile(prefix=f"sharedconv-{self.backend}-", suffix=".err")  # noqa: SIM115
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "sharedconv.harness.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            start_new_session=True,  # so a timeout can kill the whole process group
        )
        self._buffer = b""
        self.starts += 1
        self._start_fault = None
        self._send(
            {
                "op": "hello",
                "backend": self.backend,
                "threads": self.threads,
                "device": self.device,
                "tf32": self.tf32,
            }
        )
        self._greeting = True

    def greet(self) -> dict[str, Any]:
        """The spawned worker's hello (raises :class:`WorkerFault`, as a start does)."""
        self._greeting = False
        self.hello = self._receive(self.startup_timeout)
        return self.hello

    def spawn_ahead(self) -> bool:
        """:meth:`spawn` for a worker started ahead of its cases; False when it failed. A
        failed start (here or in :meth:`await_hello`) is kept and raised by the first
        :meth:`ensure`, so it becomes that case's record."""
        return self._keep_fault(self.spawn)

    def await_hello(self) -> None:
        """:meth:`greet` for a worker started with :meth:`spawn_ahead`."""
        self._keep_fault(self.greet)

    def _keep_fault(self, step: Callable[[], Any]) -> bool:
        try:
            step()
            return True
        except WorkerFault as fault:
            self._start_fault = fault
            return False

    def ensure(self) -> dict[str, Any]:
        if self._start_fault is not None:  # a spawned worker whose hello failed: its fault
            fault, self._start_fault = self._start_fault, None
            raise fault
        if self._greeting:
            return self.greet()
        if self._proc is None or self._proc.poll() is not None:
            return self.start()
        assert self.hello is not None
        return self.hello

    def alive(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The worker process's id while it runs: a restarted worker has another, and none of
        what the one before held (prepared calls kept for interleaved turns)."""
        return self._proc.pid if self.alive() else None

    def close(self) -> None:
        proc, self._proc = self._proc, None
        self._greeting, self._start_fault = False, None
        if proc is not None and proc.poll() is None:
            try:
                proc.stdin.write(b'{"op": "exit"}\n')
                proc.stdin.flush()
                proc.wait(timeout=5)
            except Exception:
                self._kill(proc)
        if proc is not None:
            # whatever the worker started (a framework's helpers, a plugin's subprocess) is in
            # its process group, which outlives it: end the group with the worker
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            for stream in (proc.stdin, proc.stdout):
                with contextlib.suppress(Exception):
                    stream.close()
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- messages ---------------------------------------------------------------------
    def call(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        """Send one request and wait for its answer; raises :class:`WorkerFault`."""
        self.ensure()
        return self._exchange(message, timeout)

    def _exchange(self, message: dict[str, Any], timeout: float) -> dict[str, Any]:
        self._send(message)
        return self._receive(timeout)

    def _send(self, message: dict[str, Any]) -> None:
        proc = self._proc
        assert proc is not None and proc.stdin is not None
        try:
            proc.stdin.write((json.dumps(message) + "\n").encode())
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._fault_after_death() from None

    def _receive(self, timeout: float) -> dict[str, Any]:
        proc = self._proc
        assert proc is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout
        fd = proc.stdout.fileno()
        with selectors.DefaultSelector() as sel:
            sel.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                left = deadline - time.monotonic()
                if left <= 0:
                    tail = self.stderr_tail()
                    self._kill(proc)
                    self._proc = None
                    raise WorkerFault(
                        "timeout",
                        f"no answer within {timeout:.0f} s; the worker was killed",
                        tail,
                    )
                if not sel.select(timeout=min(left, 1.0)):
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise self._fault_after_death()
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer = json.loads(line)
        if answer.get("op") == "fatal":
            raise WorkerFault("crashed", answer.get("reason", "worker failed"), self.stderr_tail())
        return answer

    def _fault_after_death(self) -> WorkerFault:
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._kill(proc)
                code = proc.returncode
        tail = self.stderr_tail()
        self._proc = None
        if code is not None and code < 0:
            name = signal_name(-code)
            hint = " (killed: out of memory?)" if name == "SIGKILL" else ""
            return WorkerFault("crashed", f"the worker died of {name}{hint}", tail, name)
        return WorkerFault("crashed", f"the worker exited with code {code}", tail)

    def stderr_tail(self, limit: int = 2000) -> str:
        if self._stderr is None:
            return ""
        try:
            self._stderr.flush()
            size = self._stderr.seek(0, os.SEEK_END)
            self._stderr.seek(max(0, size - limit))
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    @staticmethod
    def _kill(proc: subprocess.Popen) -> None:
        kill_group(proc)


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a process started with ``start_new_session`` and everything in its group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)


def signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def short_error(e: BaseException, limit: int = 400) -> str:
    """The line of an exception that says what went wrong.

    Framework errors (TensorFlow's especially) wrap the real message in pages of stack; the
    last line that is not part of a stack trace is the one a person needs.
    """
    lines = [line.rstrip() for line in str(e).strip().splitlines() if line.strip()]
    if len(lines) > 2:
        plain = [
            line
            for line in lines
            if not line.startswith((" ", "\t", "File ", "[[", "Detected at node", "Traceback"))
            and not line.endswith(":")
        ]
        lines = plain[-1:] or lines[-1:]
    text = " ".join(lines)
    return f"{type(e).__name__}: {text[:limit]}"


# ---- the child side ---------------------------------------------------------------------
def _pin(threads: int) -> list[int] | None:
    """Pin this process to ``threads`` cores when it may use more (for frameworks that ignore
    their thread settings). Returns the cores, or None when no pinning was needed."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        return None
    if threads >= len(cores):
        return None
    chosen = cores[:threads]
    os.sched_setaffinity(0, chosen)
    return chosen


def _serve() -> None:
    # The protocol gets the real stdout; anything a framework prints goes to stderr.
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr

    from sharedconv.backends.registry import load_backend

    from .allocators import probe as allocator_probe
    from .cases import execute_case
    from .timing import measure  # noqa: F401 - imports SciPy's statistics (~1 s) now, while
    # the workers start side by side, instead of inside each worker's first case

    backend = None
    context: dict[str, Any] = {}
    held: dict[str, Any] = {}  # prepared calls kept for interleaved turns, by case id
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        op = message.get("op")
        if op == "exit":
            break
        try:
            if op == "hello":
                pinned = _pin(int(message["threads"]))
                backend = load_backend(message["backend"])
                backend.tf32 = bool(message.get("tf32", False))
                facts = backend.configure(int(message["threads"]), message["device"]) or {}
                if pinned is not None:
                    facts["affinity"] = pinned
                # what this process really runs with: the library serving malloc and whether a
                # freed large block is reused (not what the flag asked for)
                facts["allocator"] = allocator_probe()
                # The framework's own objects never become garbage: keep them out of every later
                # collection (a full gc.collect() costs 0.15 s once TensorFlow is imported).
                gc.collect()
                gc.freeze()
                reason = backend.available()
                answer = {
                    "op": "hello",
                    "protocol": PROTOCOL,
                    "pid": os.getpid(),
                    "backend": backend.name,
                    "available": reason,
                    "versions": backend.versions() if reason is None else {},
                    "facts": facts,
                    "strategies": [s.describe() for s in backend.strategies],
                }
                context = {
                    "threads": int(message["threads"]),
                    "device": message["device"],
                    "tf32": backend.tf32,
                    "facts": facts,
                }
            elif op == "case":
                if backend is None:
                    raise RuntimeError("case before hello")
                answer = {"op": "case", **execute_case(backend, message, context, held)}
                # what the case left alive (a compiler's caches: torch.compile's first call
                # imports and builds tens of thousands of objects) joins the frozen set, so the
                # collections before every later case's memory probes scan only that case's
                # objects (without this, every case after a torch.compile cost 0.2 s more)
                gc.collect()
                gc.freeze()
            elif op == "turn":  # one timed block of a held call (harness.interleave)
                from .timing import timed_block

                fn, sync = held[message["id"]]
                for _ in range(int(message.get("warm", 0))):  # untimed: caches refilled after
                    sync(fn())  # another process's turn, as in a steady state
                seconds = timed_block(fn, sync, int(message["calls"]), time.perf_counter)
                answer = {"op": "turn", "seconds": seconds}
            elif op == "release":
                held.clear()
                gc.unfreeze()  # the held calls were frozen with their case: collect them too
                gc.collect()
                gc.freeze()
                answer = {"op": "release"}
            else:
                answer = {"op": "error", "reason": f"unknown op {op!r}"}
        except Exception as e:  # a Python error is the case's outcome, not the worker's end
            answer = {
                "op": "fatal" if op == "hello" else "case",
                "status": "error",
                "reason": short_error(e),
                "traceback": traceback.format_exc(limit=8)[-3000:],
            }
        proto.write(json.dumps(answer) + "\n")
        proto.flush()


if __name__ == "__main__":
    _serve()
