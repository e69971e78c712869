"""``sharedconv run``: a suite over every backend and strategy, timed, into the store."""

from __future__ import annotations

import contextlib
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import allocators
from .execute import OracleStore, Plan, execute, plan_cases
from .machine import machine_info, project_commit
from .records import CaseRecord, RunMeta, Timing
from .roofline import measure as measure_roofline
from .store import RoundLog, RunWriter, StoreError, new_run_id

DEFAULT_RESULTS = Path("results")


def plan_size(plan: Plan) -> int:
    return sum(1 for _ in plan_cases(plan))


def start_run(
    plan: Plan,
    root: Path,
    suite: str | None,
    run_id: str | None = None,
    roofline: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    executor: Any = None,
) -> RunWriter:
    """A new run in ``root``: its description written, the roofline measured (on a cluster,
    each node measures its own, kept in ``machines``)."""
    cluster = executor is not None and executor.kind == "ray"
    if cluster and roofline is None:
        roofline = {"error": "a cluster run: each machine's roofline is in its entry of machines"}
    meta = {
        "command": " ".join(["sharedconv", *sys.argv[1:]]) if sys.argv else "sharedconv",
        "suite": suite,
        "problems": [p.to_text() for p in plan.problems],
        "backends": plan.backends,
        "strategies": plan.strategies,
        "modes": plan.modes,
        "device": plan.device,
        "threads": plan.threads,
        "malloc": plan.mallocs,
        "allocators": {m: allocators.describe(m) for m in plan.mallocs},
        "rounds": plan.rounds,
        "interleave": plan.interleave,
        "isolate": plan.isolate,
        "tf32": plan.tf32,
        "seed": plan.seed,
        "timing": plan.timing,
        "timeout_s": plan.timeout,
        "machine": machine_info(plan.device),
        "project": project_commit(),
        "workers": {},
        **({"executor": executor.to_meta(), "machines": {}} if cluster else {}),
        **(extra or {}),
    }
    run_id = run_id if run_id is not None else new_run_id(suite or "adhoc")
    writer = RunWriter.create(root, run_id, meta)
    writer.meta["roofline"] = roofline if roofline is not None else measure_roofline(plan.threads)
    writer.save_meta()
    return writer


def plan_from_meta(meta: RunMeta) -> Plan:
    """The plan a stored run was made with (``--resume``)."""
    from sharedconv.backends.problem import parse_problem

    if not meta.backends or not meta.problems or not meta.modes or not meta.threads:
        raise StoreError(f"run {meta.run_id!r} does not record its plan; it cannot be resumed")
    return Plan(
        backends=meta.backends,
        problems=[parse_problem(t) for t in meta.problems],
        modes=meta.modes,
        strategies=meta.strategies,
        device=meta.device,
        threads=meta.threads,
        mallocs=meta.mallocs,
        rounds=meta.rounds or 1,
        interleave=bool(meta.interleave),
        isolate=bool(meta.isolate),
        tf32=bool(meta.tf32),
        seed=meta.seed or 0,
        timeout=meta.timeout_s if meta.timeout_s is not None else 120.0,
        timing=meta.timing,
    )


def run_plan(
    plan: Plan,
    writer: RunWriter,
    done: set[str] | None = None,
    on_record: Callable[[CaseRecord], None] | None = None,
    executor: Any = None,
    oracle_store: OracleStore | None = None,
) -> list[CaseRecord]:
    """Execute ``plan`` into ``writer``; returns this session's records. An interruption
    marks the run ``interrupted`` (resumable) and re-raises. ``executor`` (cli_options.Executor)
    of kind ``ray``: the cases run on the nodes of a Ray cluster (:mod:`.cluster`), and this
    process stays the run's one writer."""
    records: list[CaseRecord] = []

    precision = writer.meta.get("precision")  # a GPU check's phase: TF32 on or off

    def record(r: dict[str, Any]) -> None:
        stored = writer.append({**r, "precision": precision} if precision else r)
        records.append(stored)
        if on_record is not None:
            on_record(stored)

    def hello(backend: str, info: dict[str, Any]) -> None:
        entry = writer.meta["workers"].setdefault(backend, {})
        facts = info.get("facts", {})
        entry.update(
            versions=info.get("versions", {}), facts=facts, available=info.get("available")
        )
        # what each allocator's worker really ran with (allocators.probe)
        entry.setdefault("allocators", {})[info.get("malloc", "?")] = facts.get("allocator")
        writer.save_meta()

    def machine_hello(backend: str, info: dict[str, Any]) -> None:
        # a cluster run: each machine's workers under its own entry; the run's first stays
        # the run-level one (the pages that show one machine's versions read it)
        machine = writer.meta.setdefault("machines", {}).setdefault(info["machine"], {})
        machine.setdefault("workers", {})[backend] = {
            "versions": info.get("versions", {}),
            "facts": info.get("facts", {}),
            "available": info.get("available"),
        }
        if backend not in writer.meta["workers"]:
            hello(backend, info)
        else:
            writer.save_meta()

    def machine_joined(machine_id: str, info: dict[str, Any]) -> None:
        writer.meta.setdefault("machines", {})[machine_id] = info
        writer.save_meta()

    try:
        if executor is not None and executor.kind == "ray":
            from .cluster import execute_on_cluster

            execute_on_cluster(
                plan,
                record,
                skip=done or set(),
                on_worker=machine_hello,
                on_machine=machine_joined,
                address=executor.address,
                selector=executor.nodes,
                known_machines=writer.meta.get("machines"),
            )
        elif plan.interleave and plan.rounds <= 1:
            from .interleave import execute_interleaved

            execute_interleaved(plan, record, skip=done or set(), on_worker=hello)
        elif plan.rounds <= 1:
            execute(plan, record, skip=done or set(), on_worker=hello, oracle_store=oracle_store)
        else:
            _run_rounds(plan, writer, set(done or ()), record, hello, oracle_store)
    except BaseException as e:
        if isinstance(e, StoreError):
            writer.meta["status_note"] = str(e)
        with contextlib.suppress(StoreError):  # the disk may be what failed
            writer.finish("interrupted")
        raise
    writer.finish("complete")
    return records


# A case whose round medians differ by more than this is flagged noisy: the spread between
# worker processes, minutes apart, is what separate runs of it would see.
UNSTEADY_ROUND_SPREAD = 0.10


def _run_rounds(
    plan: Plan,
    writer: RunWriter,
    done: set[str],
    record: Callable[[dict[str, Any]], None],
    hello: Callable[[str, dict[str, Any]], None],
    oracle_store: OracleStore | None = None,
) -> None:
    """Every case ``plan.rounds`` times, round after round over the whole plan, so a case's
    measurements come from separate worker processes spread over the run. Each round's record
    goes to ``rounds.jsonl`` as it finishes (a kill loses at most the case in flight); the
    merged record goes to ``cases.jsonl`` after the case's last round, or at once when a round
    ends without a timing (skipped, mismatch, crash: there is nothing to repeat).

    With ``plan.interleave`` each round times each problem's candidates together in fresh
    workers (:func:`.interleave.execute_interleaved`), and a problem's cases are merged together
    after its last round (:func:`.interleave.merge_interleaved_rounds`: their paired ratios to
    one baseline, over the rounds)."""
    from .interleave import execute_interleaved, merge_interleaved_rounds

    log = RoundLog(writer.folder / "rounds.jsonl")
    partial: dict[str, list[dict[str, Any]]] = {}
    for r in log.read():
        if r["case"] not in done:
            partial.setdefault(r["case"], []).append(r)
    finished = []
    for case, rounds in list(partial.items()):
        # a kill between a case's last round and its merged record: merge it now
        last = max(rounds, key=lambda r: r["round"])
        if len(rounds) >= plan.rounds or last.get("status") != "pass" or not last.get("timing"):
            finished.append(partial.pop(case))
    for merged in (
        merge_interleaved_rounds(finished) if plan.interleave else map(merge_rounds, finished)
    ):
        record(merged)
        done.add(merged["case"])
    oracles = oracle_store or OracleStore()  # one oracle per problem for all rounds
    try:
        for k in range(plan.rounds):
            skip = done | {case for case, rs in partial.items() if len(rs) > k}
            last_round = k == plan.rounds - 1

            def on_round(r: dict[str, Any], k: int = k, last_round: bool = last_round) -> None:
                r = {**r, "round": k}
                log.append(r)
                rounds = partial.setdefault(r["case"], [])
                rounds.append(r)
                if r.get("status") != "pass" or not r.get("timing") or last_round:
                    if plan.interleave and last_round and r.get("timing"):
                        return  # merged with its problem's other cases (on_group)
                    merged = merge_rounds(rounds)
                    if plan.interleave:  # round 0's ratio, to round 0's fastest: not an answer
                        merged.pop("paired", None)
                    record(merged)
                    done.add(r["case"])
                    partial.pop(r["case"])

            def on_group(records: list[dict[str, Any]], last_round: bool = last_round) -> None:
                if not last_round:
                    return
                cases = [partial.pop(r["case"]) for r in records if r["case"] in partial]
                for merged in merge_interleaved_rounds(cases):
                    record(merged)
                    done.add(merged["case"])

            if plan.interleave:
                execute_interleaved(
                    plan, on_round, skip=skip, on_worker=hello, oracle_store=oracles,
                    round_index=k, on_group=on_group,
                )  # fmt: skip
            else:
                execute(plan, on_round, skip=skip, oracle_store=oracles, on_worker=hello)
    finally:
        if oracle_store is None:
            oracles.close()
        log.close()


def merge_rounds(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's record from its rounds: the first round's verification, setup and memory;
    timing statistics over every round's per-call samples, except the median (the median of
    the rounds' medians) and its interval (their range); each round's own timing is kept."""
    from .stats import summarize

    rounds = sorted(rounds, key=lambda r: r.get("round", 0))
    # a later round the run's time budget did not reach is no outcome of the case
    rounds = rounds[:1] + [r for r in rounds[1:] if r.get("status") != "skipped"]
    merged = {k: v for k, v in rounds[0].items() if k != "round"}
    merged["rounds"] = len(rounds)
    merged["wall_s"] = sum(r.get("wall_s") or 0.0 for r in rounds)
    failed = next((r for r in rounds if r.get("status") != "pass"), None)
    if failed is not None and failed is not rounds[0]:
        # a later round crashed or disagreed: that is the case's outcome
        for key in ("status", "reason", "signal", "stderr_tail", "verify"):
            if key in failed:
                merged[key] = failed[key]
        merged["failed_round"] = failed["round"]
    timings = [r["timing"] for r in rounds if r.get("timing")]
    if len(timings) < 2:
        return merged
    samples = [s for t in timings for s in Timing.from_dict(t).samples()]
    stats = summarize(samples).to_dict()
    medians = [t["stats"]["median"] for t in timings]
    # Each worker process gets one vote. The pooled samples' median lets a noisy round that
    # ran its whole budget outvote steady rounds that stopped early on --precision (seen in a
    # benchmark run: round medians 4.78, 3.04 and 3.03 ms, pooled median 4.67 ms). The rounds'
    # range stands in for the CI.
    stats["median"] = float(statistics.median(medians))
    stats["ci_low"], stats["ci_high"] = min(medians), max(medians)
    stats["median_of"] = "round medians"
    spread = max(medians) / min(medians) - 1 if min(medians) > 0 else float("inf")
    unsteady = spread > UNSTEADY_ROUND_SPREAD
    stats["noisy"] = bool(stats["noisy"] or unsteady)
    merged["timing"] = {
        "stats": stats,
        "round_medians": medians,
        "round_spread": spread,
        "unsteady": unsteady,
        "overhead_fraction": max((t.get("overhead_fraction") or 0.0) for t in timings),
        # the worst round's faults: a fault-bound round is what the flag is for
        "faults": max(
            (t["faults"] for t in timings if t.get("faults")),
            key=lambda f: f["minor_per_call"],
            default=None,
        ),
        "steady_s": sum(t.get("steady_s") or 0.0 for t in timings),
        "rounds": timings,
    }
    return merged
