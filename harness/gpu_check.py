"""``sharedconv gpu-check``: one prepared check of every GPU-capable backend, sized to a lease.

It prints the GPU (``nvidia-smi``), measures the GPU roofline (float32, TF32 and bfloat16
matmul rates, device copy bandwidth; :func:`.roofline.measure_gpu`, in a process of its own),
verifies every GPU-capable backend and strategy on the ``conformance`` suite with TF32 off,
then times the ``seed`` and ``channels`` suites, forward and train, with TF32 off, and the
``seed`` suite again with TF32 on (labelled; float32 outputs are then held to TF32's bound, and
the verdicts say so). Each phase is an ordinary run (``run.json`` + ``cases.jsonl``) under
OUTDIR: ``OUTDIR/verify``, ``OUTDIR/tf32-off``, ``OUTDIR/tf32-on``, written by the same
runner as ``sharedconv run``; each backend gets an equal share of a phase's time
(``Plan.backend_seconds``). The oracle is computed once per problem and shared by every phase
and backend. A summary table comes last.

``--dry-run`` runs the same code paths on a CPU with reduced problems (a test runs it), so no
device time is spent on a typo. On a bare GPU image, ``scripts/gpu-check`` installs this
checkout first and then runs this command.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from .cli_options import CONTEXT, backends_from

TOTAL_MINUTES = 7.0
# shares of the time budget (the rest is start-up, roofline and the summary); TF32 on times
# only the seed suite, beside the same problems with TF32 off, so full float32 gets the most
SHARES = {"verify": 0.25, "tf32-off": 0.50, "tf32-on": 0.17}
PHASES = tuple(SHARES)
MODES = ["forward", "train"]
DRY_RUN_MINUTES = 1.0


@dataclass
class Phase:
    name: str
    suite: str
    problems: list[Any]
    timing: dict[str, Any] | None
    tf32: bool
    seconds: float
    roofline: dict[str, Any] | None


def nvidia_smi() -> str:
    if not shutil.which("nvidia-smi"):
        return "nvidia-smi not found"
    out = subprocess.run(["nvidia-smi"], capture_output=True, text=True)
    return out.stdout or out.stderr


def gpu_backends(wanted: list[str] | None) -> tuple[list[str], list[tuple[str, str]]]:
    """The installed backends that run on CUDA, and those that would but are missing here."""
    from sharedconv.backends.registry import backend_names, load_backend

    ready, missing = [], []
    for name in backend_names():
        if wanted is not None and name not in wanted:
            continue
        backend = load_backend(name)
        if "cuda" not in backend.devices:
            continue
        why = backend.available()
        if why:
            missing.append((name, why))
        else:
            ready.append(name)
    return ready, missing


def run_phase(phase: Phase, out: Path, backends: list[str], device: str, oracles: Any) -> list:
    """One phase as one run; each backend gets an equal share of the phase's time."""
    from .execute import Plan
    from .runner import run_plan, start_run
    from .worker import default_threads

    plan = Plan(
        backends=backends,
        problems=phase.problems,
        modes=MODES,
        device=device,
        threads=default_threads(),
        timing=phase.timing,
        timeout=90,
        tf32=phase.tf32,
        backend_seconds=phase.seconds / max(1, len(backends)),
    )
    precision = "TF32 on" if phase.tf32 else "TF32 off (full float32)"
    writer = start_run(
        plan,
        out,
        phase.suite,
        phase.name,
        roofline=phase.roofline,
        extra={"precision": precision, "gpu_check": phase.name},
    )

    def report(r: Any) -> None:
        if r.failed:
            click.echo(f"  {r.status}: {r.case}: {(r.reason or '')[:160]}")

    records = run_plan(plan, writer, on_record=report, oracle_store=oracles)
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    click.echo(f"{phase.name}: {json.dumps(counts)} -> {writer.folder}")
    return records


def summary_table(runs: dict[str, list]) -> Any:
    from rich.table import Table

    from .summary import format_seconds, group_by_problem, rank

    table = Table(
        title="GPU check: fastest strategy and the seed's options per problem", title_justify="left"
    )
    for col in ("precision", "problem", "mode", "fastest", "median", "opt 1 (Conv3D)",
                "opt 2 (map)", "opt 3 (split)"):  # fmt: skip
        table.add_column(col)
    for name, records in runs.items():
        for (problem, mode, *_), group in group_by_problem(records).items():
            rows = rank(group)
            if not rows:
                continue
            opts: dict[int, str] = {}
            for row in rows:
                k = row.record.seed_option
                if k and k not in opts:
                    opts[k] = f"{format_seconds(row.median)} ({row.label})"
            best = rows[0]
            table.add_row(name, problem, mode, best.label, format_seconds(best.median),
                          *(opts.get(k, "") for k in (1, 2, 3)))  # fmt: skip
    return table


def phases_for(dry_run: bool, names: list[str], suites: list[str], seconds: float,
               roofline: dict[str, Any] | None) -> list[Phase]:  # fmt: skip
    from sharedconv.backends.problem import parse_problem
    from sharedconv.backends.suites import load_suite

    if dry_run:
        verify = [parse_problem(t) for t in ("B=2,C=3,H=12,W=11,N=4,K=3,padding=same",
                                              "B=2,C=3,H=13,W=12,N=4,K=3,stride=2")]  # fmt: skip
        by_suite = {"seed": [parse_problem("B=2,C=3,H=32,W=32,N=8,K=5")],
                    "channels": [parse_problem("B=2,C=8,H=32,W=32,N=8,K=5")]}  # fmt: skip
        timing = {"budget": 0.05, "precision": 0.5, "min_samples": 5}
    else:
        verify = list(load_suite("conformance").problems)
        by_suite = {name: list(load_suite(name).problems) for name in ("seed", "channels")}
        timing = {"budget": 0.25, "precision": 0.02, "min_samples": 5}
    timed = [p for name in suites for p in by_suite[name]]
    # the phases left out give their time to the others
    scale = sum(SHARES.values()) / sum(SHARES[p] for p in names)
    tf32_roof = (
        dict(roofline, peak_flops=roofline.get("peak_flops_tf32"))
        if roofline and roofline.get("peak_flops_tf32")
        else roofline
    )
    on = [p for p in timed if p in by_suite["seed"]] or timed
    every = {
        "verify": Phase("verify", "conformance", verify, None, False, 0.0, roofline),
        "tf32-off": Phase("tf32-off", ",".join(suites), timed, timing, False, 0.0, roofline),
        "tf32-on": Phase("tf32-on", "seed", on, timing, True, 0.0, tf32_roof),
    }
    chosen = [every[n] for n in PHASES if n in names]
    for phase in chosen:
        phase.seconds = seconds * SHARES[phase.name] * scale
    return chosen


def _choices(value: str, allowed: tuple[str, ...], option: str) -> list[str]:
    names = [v for v in value.split(",") if v]
    for name in names:
        if name not in allowed:
            raise click.BadParameter(
                f"unknown {name!r}; choose from {','.join(allowed)}", param_hint=option
            )
    if not names:
        raise click.BadParameter(f"choose from {','.join(allowed)}", param_hint=option)
    return names


@click.command("gpu-check", context_settings=CONTEXT)
@click.argument("outdir", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--dry-run", is_flag=True, help="CPU, reduced problems: the same code paths, no GPU needed."
)
@click.option(
    "--minutes",
    type=click.FloatRange(min=0.1),
    help=f"Time budget of the whole check (default {TOTAL_MINUTES:g}; {DRY_RUN_MINUTES:g} with --dry-run).",
)
@click.option(
    "--backends",
    "-b",
    metavar="LIST",
    help="Comma-separated (default: every installed GPU-capable backend; torch,jax with --dry-run).",
)
@click.option(
    "--phases",
    default=",".join(PHASES),
    show_default=True,
    help="Which phases to run; those left out give their time to the others.",
)
@click.option(
    "--suites",
    default="seed,channels",
    show_default=True,
    help="The suites TF32 off times (TF32 on times the seed suite's problems among them).",
)
def gpu_check_cmd(outdir: Path, dry_run: bool, minutes: float | None, backends: str | None,
                  phases: str, suites: str) -> None:  # fmt: skip
    """Verify and time every GPU-capable backend, sized to a device lease (runs under OUTDIR).

    Copy each run to results/ (e.g. OUTDIR/tf32-off to results/reference-h100-tf32-off/) to see
    it in the dashboard.
    """
    from rich.console import Console

    from .execute import OracleStore
    from .roofline import measure_gpu
    from .store import StoreError

    t_start = time.monotonic()
    names = _choices(phases, PHASES, "--phases")
    suite_names = _choices(suites, ("seed", "channels"), "--suites")
    minutes = minutes or (DRY_RUN_MINUTES if dry_run else TOTAL_MINUTES)
    wanted = backends_from(backends) if backends else (["torch", "jax"] if dry_run else None)
    outdir.mkdir(parents=True, exist_ok=True)
    click.echo(nvidia_smi())
    ready, missing = gpu_backends(wanted)
    for name, why in missing:
        click.echo(f"{name}: not measured here ({why})")
    if not ready:
        raise click.UsageError(
            "no GPU-capable backend is installed here (torch or jax); `sharedconv backends` says why"
        )
    roofline = None
    if not dry_run:
        roofline = measure_gpu()
        if "error" in roofline:
            raise click.UsageError(f"{roofline['error']}; on a CPU machine use --dry-run")
        shown = {k: v for k, v in roofline.items() if k != "method"}
        click.echo(f"GPU roofline: {json.dumps(shown)}")
    seconds = minutes * 60 - (time.monotonic() - t_start)
    device = "cpu" if dry_run else "cuda"
    oracles = OracleStore()  # one oracle per problem for every phase and backend
    runs: dict[str, list] = {}
    try:
        for phase in phases_for(dry_run, names, suite_names, seconds, roofline):
            records = run_phase(phase, outdir, ready, device, oracles)
            if phase.name != "verify":
                runs[phase.name] = records
    except StoreError as e:  # e.g. OUTDIR holds this phase's run from an earlier check
        raise click.UsageError(f"{e}; give the check an empty OUTDIR") from None
    finally:
        oracles.close()
    for name, why in missing:
        click.echo(f"{name}: not measured here ({why})")
    Console(width=200).print(summary_table(runs))
    click.echo(f"done in {time.monotonic() - t_start:.0f} s; runs in {outdir}")
