"""What machine produced a run: CPU, cores, memory, OS, Python, the project's commit."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

from sharedconv.backends.native_backend import AVX512, cpu_flags

from .records import Machine


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# The vector instruction sets that decide a CPU kernel's speed, from /proc/cpuinfo's flags:
# two VMs of one model name ("AMD EPYC") can differ here, and the native kernel's build with it
# ("AVX-512" is exactly what its AVX-512 build needs).
ISA_LEVELS = [
    ("AVX-512", AVX512),
    ("AVX2+FMA", {"avx2", "fma"}),
    ("AVX", {"avx"}),
    ("SSE2", {"sse2"}),
    ("NEON", {"asimd"}),
]


def vector_isa(cpuinfo: str | None = None) -> str | None:
    """The widest of ISA_LEVELS this CPU has (``cpuinfo``: /proc/cpuinfo's text), with
    AVX-512's bfloat16/VNNI/fp16 extensions named (e.g. "AVX-512 (bf16, vnni)"); None where
    /proc/cpuinfo is unreadable or names none of them."""
    flags = cpu_flags(cpuinfo)
    for name, needs in ISA_LEVELS:
        if needs <= flags:
            extras = [e for e in ("bf16", "vnni", "fp16") if f"avx512_{e}" in flags]
            if name == "AVX-512" and extras:
                return f"{name} ({', '.join(extras)})"
            return name
    return None


def project_commit() -> dict[str, Any]:
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {"commit": None}
    if head.returncode != 0:
        return {"commit": None}
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def gpu_name() -> str | None:
    """The first GPU's name as ``nvidia-smi`` reports it (no framework is imported), or None."""
    import shutil

    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    names = out.stdout.strip().splitlines() if out.returncode == 0 else []
    return names[0].strip() if names else None


def machine_info(device: str = "cpu") -> dict[str, Any]:
    """This machine as a run records it; ``gpu`` is named for a run on a GPU (``device`` not
    ``cpu``), so a CPU run on a machine that has one is labelled by its CPU."""
    import numpy as np

    from .memory import available_bytes

    try:
        import psutil

        total = int(psutil.virtual_memory().total)
    except ImportError:  # the GPU machines have no psutil
        total = available_bytes()

    try:
        affinity = sorted(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        affinity = list(range(os.cpu_count() or 1))
    flags = {
        k: os.environ[k]
        for k in (
            "OPENBLAS_CORETYPE",
            "OPENBLAS_L2_SIZE",
            "OMP_NUM_THREADS",
            "TF_ENABLE_ONEDNN_OPTS",
        )
        if k in os.environ
    }
    return {
        "hostname": socket.gethostname(),
        "cpu_model": cpu_model(),
        "vector_isa": vector_isa(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(affinity),
        "memory_bytes": total,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "numpy": np.__version__,
        "gpu": gpu_name() if device != "cpu" else None,
        "env_flags": flags,
    }


def machine_key(machine: Machine) -> tuple:
    """What tells two machines apart in stored results: host names repeat (containers, VMs:
    every machine here is "vm"), so the CPU, its vector ISA (one model name covers VMs with
    and without AVX-512; None in runs from before it was recorded, which so match no machine
    that records it) and its core count go with it."""
    return (machine.hostname, machine.cpu_model, machine.vector_isa, machine.logical_cores)


def this_machine() -> tuple:
    """:func:`machine_key` of the machine this process runs on."""
    return (socket.gethostname(), cpu_model(), vector_isa(), os.cpu_count())


def same_cpu(machine: Machine) -> bool:
    """Whether ``machine`` has this process's CPU, whatever its host name (a container's
    changes from start to start): the model and, where the record has it, the vector ISA."""
    return machine.cpu_model == cpu_model() and machine.vector_isa in (None, vector_isa())


def machine_kind(machine: Machine) -> tuple:
    """Machines of one kind measure alike (a cluster run gives each kind the whole plan, and
    retries a lost case only on its kind): the CPU model, the usable cores and the GPU."""
    return (machine.cpu_model, machine.usable_cores, machine.gpu)
