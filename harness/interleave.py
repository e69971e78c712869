"""Paired, interleaved timing: the candidates of one problem measured at the same time.

On a shared machine the same call's median moves 10-60% between runs, and a slow spell can
outlast a case's whole budget (docs/harness-benchmark.md). Timed one after another, two
strategies meet different spells and their ratio takes the difference. Timed in *cycles* (every
candidate once per cycle, in a new random order each cycle) a spell that lasts a cycle or more
hits them alike, and the per-cycle ratio cancels it: the textbook paired design, and
google-benchmark's random interleaving.

:func:`interleave` is the schedule, with the clock and the timed call injected (tested with a
fake clock and injected drift); :func:`execute_interleaved` runs it over worker processes: every
framework's worker of a problem stays alive with its candidates prepared (verified, memory
measured, calibrated), and the parent asks one worker at a time for one timed turn, so the
workers never share the cores. "One at a time" includes after the turn: OpenMP runtimes
(libgomp: PyTorch's, the native kernel's) keep their threads spinning for several milliseconds
after a parallel region, so the parent waits (:func:`settle`) until the process whose turn
ended has no thread on a CPU before it starts the next turn.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from .records import CaseRecord
from .stats import geometric_mean_ci, paired_ratio, summarize

# A turn: one timed block of calls of one candidate. Long enough that the parent's request
# (~0.1 ms) is far outside it and the timer's own cost is small, short enough that a cycle
# over a dozen candidates stays well under the machine's slow spells (seconds).
TURN_SECONDS = 0.02
# Each turn of a call faster than this starts with one untimed call: the previous turn was
# another strategy's, often another process's, and left the caches full of its own data.
WARM_BELOW_SECONDS = 0.05
MIN_CYCLES = 5
MAX_CYCLES = 400
# After a turn, the parent polls the worker's threads until none is running in QUIET_POLLS
# polls in a row. Without it, a candidate's turns right after another OpenMP process's turn ran
# up to 1.59 times slower than its other turns (C=16 forward, 6 frameworks:
# scripts/bench_settle.py, docs/harness-benchmark.md): that process's idle threads still spun
# on one of the two cores. A process never quiet within
# SETTLE_LIMIT_S in GIVE_UP_AFTER turns (a runtime that spins for good) is no longer waited for,
# and its candidates' records say so.
# SHAREDCONV_SETTLE=0 turns the wait off (scripts/bench_settle.py measures what it changes).
SETTLE_ENV = "SHAREDCONV_SETTLE"
SETTLE_POLL_S = 0.0005
QUIET_POLLS = 2
SETTLE_LIMIT_S = 0.25
GIVE_UP_AFTER = 3


def running_threads(pid: int) -> int | None:
    """How many of process ``pid``'s threads are running or runnable now (state R in Linux
    ``/proc/PID/task/*/stat``); None where that cannot be read (another OS, a process gone)."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    n = 0
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue  # a thread that ended while the list was read
        # the state follows the command name, which may itself hold ") "
        state = stat.rindex(b")") + 2
        n += stat[state : state + 1] == b"R"
    return n


def settle(
    pid: int | None,
    running: Callable[[int], int | None] = running_threads,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], None] = time.sleep,
    limit_s: float = SETTLE_LIMIT_S,
) -> tuple[float, bool | None]:
    """Wait until process ``pid`` has had no running thread in QUIET_POLLS polls in a row, at
    most ``limit_s``. Returns the seconds waited and whether it went quiet (None: its threads
    cannot be read here, and nothing was waited for)."""
    if pid is None:
        return 0.0, None
    start = clock()
    quiet = 0
    while True:
        n = running(pid)
        if n is None:
            return clock() - start, None
        quiet = quiet + 1 if n == 0 else 0
        if quiet >= QUIET_POLLS:
            return clock() - start, True
        if clock() - start >= limit_s:
            return clock() - start, False
        sleep(SETTLE_POLL_S)


def log_ratio_half_width(a: Sequence[float], b: Sequence[float]) -> float:
    """Half the 95% interval of mean(log a - log b), normal approximation: the cheap stopping
    rule checked after each cycle (the bootstrap gives the reported interval at the end)."""
    d = np.log(np.asarray(a)) - np.log(np.asarray(b))
    if len(d) < 3:
        return math.inf
    return float(1.96 * d.std(ddof=1) / math.sqrt(len(d)))


def interleave(
    candidates: Sequence[str],
    time_turn: Callable[[str], float],
    budget_s: float,
    precision: float = 0.02,
    clock: Callable[[], float] = time.perf_counter,
    seed: int = 0,
    min_cycles: int = MIN_CYCLES,
    max_cycles: int = MAX_CYCLES,
) -> dict[str, list[float]]:
    """Per-call seconds of every candidate, one value per cycle, aligned by cycle.

    Each cycle times every candidate once (``time_turn(name)``: seconds per call of one timed
    block) in a new random order. Stops after ``min_cycles`` when every candidate's ratio to the
    fastest is known within ``precision`` (half its 95% interval, relative), when ``budget_s``
    is spent, or after ``max_cycles``. A turn that raises ends the schedule (the caller drops
    that candidate's worker and starts again: :func:`execute_interleaved`).
    """
    rng = random.Random(seed)
    times: dict[str, list[float]] = {c: [] for c in candidates}
    start = clock()
    for cycle in range(max_cycles):
        order = list(times)
        rng.shuffle(order)
        for name in order:
            times[name].append(time_turn(name))
        if cycle + 1 < min_cycles:
            continue
        if clock() - start >= budget_s:
            break
        if len(times) < 2:
            if summarize(next(iter(times.values()))).ci_half_width_fraction <= precision:
                break
            continue
        best = fastest(times)
        widths = [log_ratio_half_width(times[c], times[best]) for c in times if c != best]
        if max(widths) <= math.log1p(precision):
            break
    return times


def fastest(times: dict[str, list[float]]) -> str:
    """The candidate with the smallest geometric mean over cycles."""
    return min(times, key=lambda c: float(np.mean(np.log(times[c]))))


def paired_summary(
    times: dict[str, list[float]], seed: int = 0
) -> tuple[str, dict[str, dict[str, float]]]:
    """The fastest candidate (geometric mean over cycles) and every candidate's ratio to it,
    with a bootstrap 95% interval over cycles."""
    best = fastest(times)
    out = {}
    for name, values in times.items():
        ratio, low, high = paired_ratio(values, times[best], seed=seed)
        out[name] = {"ratio": ratio, "low": low, "high": high, "cycles": len(values)}
    return best, out


def paired_between(a: CaseRecord, b: CaseRecord) -> tuple[float, float, float] | None:
    """b's time over a's, paired by cycle, when both were timed in the same interleaved group
    (or, measured in rounds, in the same group of each of at least two rounds:
    :func:`over_rounds`); None otherwise (then only their medians, measured apart, can be
    compared)."""
    ta, tb = a.timing, b.timing
    if ta is None or tb is None:
        return None
    if ta.rounds and tb.rounds:
        by_group = {t.interleaved.get("group"): t for t in tb.rounds if t.interleaved}
        per_round = [
            _paired_timings(t, by_group[t.interleaved.get("group")])
            for t in ta.rounds
            if t.interleaved and t.interleaved.get("group") in by_group
        ]
        return over_rounds([p for p in per_round if p is not None])
    return _paired_timings(ta, tb)


def _paired_timings(ta: Any, tb: Any) -> tuple[float, float, float] | None:
    if not ta.interleaved or not tb.interleaved:
        return None
    if ta.interleaved.get("group") != tb.interleaved.get("group"):
        return None
    sa, sb = ta.samples(), tb.samples()
    if len(sa) != len(sb) or len(sa) < 3 or min(sa + sb) <= 0:
        return None
    return paired_ratio(sb, sa)


def over_rounds(
    per_round: Sequence[tuple[float, float, float]],
) -> tuple[float, float, float] | None:
    """One ratio from each round's paired ratio: their geometric mean, and a 95% t-interval
    over the rounds' log-ratios. Each round's workers are fresh processes, and on this machine
    one process can run a framework 20-40% slower for its whole life (docs/harness-benchmark.md);
    pairing within a round cannot cancel that, so the rounds are the units and the interval
    is over them (:func:`.stats.geometric_mean_ci`). None with fewer than two rounds."""
    return geometric_mean_ci([r[0] for r in per_round])


def group_records(
    records: Iterable[dict[str, Any]], times: dict[str, list[float]], turn_calls: dict[str, int],
    group: str, seed: int, settled: dict[str, dict[str, Any]] | None = None,
) -> None:  # fmt: skip
    """Replace each timed record's samples by its interleaved turns and store its ratio to the
    group's fastest candidate (``record["paired"]``); ``settled``: per case, the parent's wait
    for its process to go quiet after its turns (:class:`Settler`)."""
    by_case = {r["case"]: r for r in records}
    best, ratios = paired_summary(times, seed) if times else ("", {})
    for case, values in times.items():
        r = by_case[case]
        timing = r.setdefault("timing", {})
        calls = turn_calls[case]
        stats = summarize(values)
        timing["calibration"] = {
            k: timing.pop(k)
            for k in ("block_times", "stats", "stopped_by", "block_size")
            if k in timing
        }
        timing.update(
            block_times=[v * calls for v in values],
            block_size=calls,
            stats=stats.to_dict(),
            stopped_by="interleaved",
            interleaved={"group": group, "cycles": len(values), "candidates": len(times)},
        )
        if settled and case in settled:
            timing["interleaved"]["settle"] = settled[case]
        r["paired"] = {"baseline": by_case[best]["backend"] + "/" + by_case[best]["strategy"],
                       **ratios[case]}  # fmt: skip


class Settler:
    """The parent's wait after each turn (:func:`settle`), kept per case for its record, with
    the give-up rule per process."""

    def __init__(self, settle_fn: Callable[[int | None], tuple[float, bool | None]] = settle):
        self.settle_fn = settle_fn
        self.waits: dict[str, list[float]] = {}
        self.not_quiet: dict[str, int] = {}
        self.unquiet_turns: dict[int, int] = {}
        self.total_s = 0.0

    def given_up(self, pid: int | None) -> bool:
        return pid is not None and self.unquiet_turns.get(pid, 0) >= GIVE_UP_AFTER

    def after(self, case: str, pid: int | None) -> None:
        """Wait for ``case``'s process (``pid``) to go quiet after its turn."""
        if pid is None or self.given_up(pid):
            return
        waited, quiet = self.settle_fn(pid)
        self.total_s += waited
        if quiet is None:
            return
        self.waits.setdefault(case, []).append(waited)
        if not quiet:
            self.not_quiet[case] = self.not_quiet.get(case, 0) + 1
            self.unquiet_turns[pid] = self.unquiet_turns.get(pid, 0) + 1

    def summary(self, pids: dict[str, int | None]) -> dict[str, dict[str, Any]]:
        """Per case: the median and longest wait after its turns, the turns after which its
        process was not quiet within the limit, and whether the parent stopped waiting."""
        out = {}
        for case, waits in self.waits.items():
            out[case] = {
                "median_s": float(np.median(waits)),
                "max_s": max(waits),
                "not_quiet": self.not_quiet.get(case, 0),
                "gave_up": self.given_up(pids.get(case)),
            }
        return out


def execute_interleaved(
    plan: Any,
    on_record: Callable[[dict[str, Any]], None],
    skip: Iterable[str] = (),
    on_worker: Callable[[str, dict[str, Any]], None] | None = None,
    oracle_store: Any = None,
    round_index: int | None = None,
    on_group: Callable[[list[dict[str, Any]]], None] | None = None,
) -> None:
    """Run ``plan`` problem by problem, timing each problem's candidates interleaved.

    For each (problem, mode, allocator): every case is verified, its memory measured and its
    call calibrated in its framework's worker (a fifth of its budget), which then holds the
    prepared call; the parent then runs :func:`interleave` over all of them, across the
    frameworks' workers, with the rest of the budget. Records are written when their problem
    is done (``--resume`` redoes an unfinished problem's cases). A worker that dies during
    the turns loses its candidates' interleaved timing, not their records: they keep the
    calibration's timing and say why.

    ``round_index`` (``--rounds``): the round this is, named in each group (the rounds' turns are
    paired within a round, never across); ``on_group`` is called with a problem's records after
    each has gone to ``on_record``; ``oracle_store`` is kept open for the caller's next round.
    """
    from .execute import OracleStore, base_record, hello_once, past_deadline, plan_cases, run_case
    from .worker import WorkerFault, WorkerProcess

    done = set(skip)
    store = oracle_store or OracleStore()
    workers: dict[tuple[str, str], WorkerProcess] = {}
    seen: set[tuple[str, str]] = set()
    groups: dict[tuple[Any, str, str], list[tuple[Any, dict | None, dict]]] = {}
    for key, decided, meta in plan_cases(plan):
        if key.ident() not in done:
            groups.setdefault((key.problem, key.mode, key.malloc), []).append((key, decided, meta))
    timing = dict(plan.timing or {})
    budget = float(timing.get("budget", 1.0))
    calibration = {**timing, "budget": budget / 5}
    try:
        for (problem, _mode, malloc), cases in groups.items():
            records: list[dict[str, Any]] = []
            # worker, calls, warm-up calls, the worker's process id when it took the call
            held: dict[str, tuple[WorkerProcess, int, int, int | None]] = {}
            for key, decided, meta in cases:
                record = {**base_record(key, plan.threads), **meta}
                records.append(record)
                decided = decided or past_deadline(plan)
                if decided is not None:
                    record.update(decided)
                    continue
                worker = workers.get((key.backend, malloc))
                if worker is None:
                    worker = workers[(key.backend, malloc)] = WorkerProcess(
                        key.backend, plan.threads, plan.device, verbose=plan.verbose, malloc=malloc,
                        tf32=plan.tf32,
                    )  # fmt: skip
                ensure = hello_once(key, worker, seen, on_worker)
                run_case(plan, key, record, worker, store, ensure, calibration, hold=True)
                if record.get("timed") and record.get("held"):
                    stats = record["timing"]["stats"]
                    calls = max(
                        int(record["timing"]["block_size"]),
                        math.ceil(TURN_SECONDS / stats["median"]),
                    )
                    warm = int(stats["median"] < WARM_BELOW_SECONDS)
                    held[key.ident()] = (worker, calls, warm, worker.pid)
            held = still_held(held, records)
            if held:
                _time_group(plan, records, held, budget * len(held) * 4 / 5, round_index)
            for w in {id(h[0]): h[0] for h in held.values()}.values():
                with contextlib.suppress(WorkerFault):
                    w.call({"op": "release"}, plan.timeout)
            for record in records:
                record.pop("held", None)
                on_record(record)
            if on_group is not None:
                on_group(records)
            store.drop(problem)
    finally:
        for w in workers.values():
            w.close()
        if oracle_store is None:
            store.close()


def still_held(
    held: dict[str, tuple[Any, int, int, int | None]], records: list[dict[str, Any]]
) -> dict[str, tuple[Any, int, int, int | None]]:
    """The held candidates whose worker still runs the process that took their call. A later
    case that timed out or crashed restarts its framework's worker, and the calls the one
    before held are gone: a turn asked of them failed with a KeyError, which stopped the
    interleaved timing of every candidate of the problem (the floor benchmark's 64- and
    128-channel train steps, 2026-11-29). Those candidates keep their calibration's timing and
    say why; the others take their turns."""
    by_case = {r["case"]: r for r in records}
    kept = {}
    for case, entry in held.items():
        worker, pid = entry[0], entry[3]
        if worker.alive() and worker.pid == pid:
            kept[case] = entry
        else:
            by_case[case].setdefault("timing", {})["interleaved_error"] = (
                "not interleaved: its worker was restarted after a later case's fault, and the "
                "prepared call went with the process before"
            )
    return kept


def _time_group(
    plan: Any,
    records: list[dict[str, Any]],
    held: dict[str, tuple[Any, int, int, int | None]],
    budget: float,
    round_index: int | None = None,
) -> None:
    from .worker import WorkerFault

    dropped: dict[str, str] = {}
    waiting = os.environ.get(SETTLE_ENV, "1") != "0"
    settler = Settler() if waiting else Settler(lambda pid: (0.0, None))
    pids = {case: entry[3] for case, entry in held.items()}
    previous: dict[str, list[str | None]] = {case: [] for case in held}
    last: list[str | None] = [None]

    def turn(case: str) -> float:
        worker, calls, warm, pid = held[case]
        answer = worker.call({"op": "turn", "id": case, "calls": calls, "warm": warm}, plan.timeout)
        if answer.get("op") != "turn":
            raise RuntimeError(answer.get("reason") or f"unexpected answer {answer.get('op')!r}")
        settler.after(case, pid)
        previous[case].append(last[0])
        last[0] = case
        return float(answer["seconds"]) / calls

    def sampling_clock() -> float:
        # the budget is for turns: the waits between them do not spend it
        return time.perf_counter() - settler.total_s

    for pid in set(pids.values()) if waiting else ():
        settle(pid)  # the calibrations' last process may still spin
    names = list(held)
    times: dict[str, list[float]] = {}
    while names:
        for case in names:  # a schedule started again: its turns so far are not kept
            previous[case].clear()
        last[0] = None
        try:
            times = interleave(
                names, turn, budget, precision=float((plan.timing or {}).get("precision", 0.02)),
                clock=sampling_clock, seed=plan.seed,
            )  # fmt: skip
            break
        except (WorkerFault, RuntimeError) as e:
            # one worker failed a turn: its candidates leave, the others start their cycles again
            bad = {c for c in names if not held[c][0].alive() or held[c][0].pid != held[c][3]}
            bad = bad or set(names)
            for c in bad:
                dropped[c] = f"interleaved timing stopped: {e}"
            names = [c for c in names if c not in bad]
    group = f"{records[0]['problem']}/{records[0]['mode']}/{records[0]['malloc']}"
    if round_index is not None:
        group += f"/round {round_index}"
    group_records(
        records, times, {c: held[c][1] for c in times}, group, plan.seed, settler.summary(pids)
    )
    by_case = {r["case"]: r for r in records}
    name = {c: f"{by_case[c]['backend']}/{by_case[c]['strategy']}" for c in held}
    for case in times:
        # which candidate's turn came just before each of this one's (None: the first turn)
        by_case[case]["timing"]["interleaved"]["after"] = [
            None if p is None else name[p] for p in previous[case]
        ]
        if not waiting:
            by_case[case]["timing"]["interleaved"]["settle"] = "off"
    for case, why in dropped.items():
        by_case[case].setdefault("timing", {})["interleaved_error"] = why


def _ratios_to(
    base: dict[str, Any], group: list[dict[str, Any]], records: dict[int, CaseRecord]
) -> dict[int, tuple[float, float, float] | None]:
    """Each merged case's paired ratio over the rounds to ``base`` (by ``id`` of the dict)."""
    return {
        id(m): (1.0, 1.0, 1.0) if m is base else paired_between(records[id(base)], records[id(m)])
        for m in group
    }


def merge_interleaved_rounds(cases: Iterable[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Merged records of cases timed interleaved in rounds (``--interleave --rounds N``), each
    given as its rounds' records: :func:`~.runner.merge_rounds` per case, then, per problem
    (problem, mode, allocator), every timed case's ratio to one baseline, the fastest case
    paired over the rounds, combined over the rounds (:func:`over_rounds`)."""
    from .runner import merge_rounds

    merged = [merge_rounds(rounds) for rounds in cases]
    problems: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for m in merged:
        m.pop("paired", None)  # the first round's, against that round's fastest
        if m.get("status") == "pass" and (m.get("timing") or {}).get("rounds"):
            problems.setdefault((m["problem"], m["mode"], m.get("malloc")), []).append(m)
    for group in problems.values():
        records = {id(m): CaseRecord.from_dict(m) for m in group}
        # first the smallest median of round medians; then, if a case is faster than it
        # paired (the rounds' geometric mean), that case: the baseline is the fastest by the
        # measure the ratios use, so no ratio is below 1 by more than their own rounding
        base = min(group, key=lambda m: m["timing"]["stats"]["median"])
        ratios = _ratios_to(base, group, records)
        quickest = min(group, key=lambda m: (ratios[id(m)] or (math.inf,))[0])
        if quickest is not base:
            base, ratios = quickest, _ratios_to(quickest, group, records)
        for m in group:
            ratio = ratios[id(m)]
            if ratio is not None:
                m["paired"] = {
                    "baseline": f"{base['backend']}/{base['strategy']}",
                    "ratio": ratio[0], "low": ratio[1], "high": ratio[2],
                    "rounds": len(m["timing"]["rounds"]),
                }  # fmt: skip
    return merged
