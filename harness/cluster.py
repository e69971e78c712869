"""One run over many machines: the plan's cases placed on the nodes of a Ray cluster.

Each chosen node gets one actor, ``NodeRunner``, that holds the node's exclusive custom
resource (``sharedconv``, 1 per node), so two cases never share a node's cores. The actor runs
cases exactly as a local run does: a :class:`~.execute.CaseRunner` with its worker processes,
thread count, allocator, oracle check and timer. The submitting process hands out one case at a
time to whichever node is free, receives each record as it finishes and writes the run itself
(one writer: the same run.json, cases.jsonl, lock and resume as a local run). Every record names
the machine that measured it; run.json's ``machines`` table describes each (CPU, cores, GPU,
versions, and the roofline measured on that node when it joined).

Faults: a node lost mid-case records nothing for that case yet: the case is retried once on
another node of the same kind (CPU model, cores, GPU), and recorded ``crashed: node lost`` when
there is none or the retry is lost too. A case that outlives the run's case timeout (plus a
grace for the worker's own timeout to act) has its actor killed and is recorded ``timeout``;
the node gets a fresh actor. Ctrl-C kills the actors and leaves a resumable run.

Ray is an optional extra (``pip install 'sharedconv[ray]'``); only this module imports it.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .execute import CaseKey, CaseRunner, Plan, base_record, past_deadline, plan_cases
from .machine import machine_kind
from .records import Machine

RESOURCE = "sharedconv"
INSTALL = "pip install 'sharedconv[ray]'"
START_HINT = (
    "start one with `ray start --head --resources '{\"sharedconv\": 1}'` and join each further "
    "node with `ray start --address HEAD:6379 --resources '{\"sharedconv\": 1}'` (docs/cluster.md)"
)
# beyond the case timeout, what the node's own worker timeout gets to act before the actor
# is killed from here
GRACE_S = 60.0
# a node whose runner died answers a fresh one within this, or it is taken for lost
PROBE_S = 30.0


class ClusterError(RuntimeError):
    """The cluster cannot run this plan as asked (the message says why and what to do)."""


def _ray():
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--executor ray needs Ray: {INSTALL}") from None
    return ray


def connect(address: str | None) -> Any:
    """Joins the Ray cluster at ``address`` (``auto``: the one this machine belongs to)."""
    ray = _ray()
    if ray.is_initialized():
        return ray
    try:
        ray.init(
            address=address or "auto",
            logging_level=logging.WARNING,
            log_to_driver=False,
            configure_logging=False,
        )
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterError(f"no Ray cluster at {address or 'auto'} ({e}); {START_HINT}") from None
    return ray


def select_nodes(nodes: list[dict[str, Any]], selector: str | None) -> list[dict[str, Any]]:
    """The alive nodes that offer the exclusive resource, narrowed by ``selector``: comma-
    separated node-id prefixes, node IP addresses, host names or ``resource:NAME`` (nodes
    started with that custom resource)."""
    usable = [n for n in nodes if n.get("Alive") and n.get("Resources", {}).get(RESOURCE, 0) >= 1]
    if not usable:
        raise ClusterError(f"no node of the cluster offers the '{RESOURCE}' resource; {START_HINT}")
    if not selector:
        return usable
    chosen = []
    for part in (p.strip() for p in selector.split(",") if p.strip()):
        if part.startswith("resource:"):
            found = [n for n in usable if n["Resources"].get(part.removeprefix("resource:"), 0) > 0]
        else:
            found = [
                n
                for n in usable
                if n["NodeID"].startswith(part)
                or part in (n.get("NodeManagerAddress"), n.get("NodeManagerHostname"))
            ]
        if not found:
            raise ClusterError(
                f"--nodes {part!r} matches no node offering '{RESOURCE}'; the nodes: "
                + ", ".join(
                    f"{n['NodeID'][:8]} ({n.get('NodeManagerAddress')}, {n.get('NodeManagerHostname')})"
                    for n in usable
                )
            )
        chosen += [n for n in found if n not in chosen]
    return chosen


class NodeRunner:
    """On one node: describes it, then runs the cases it is handed, one at a time."""

    def __init__(self, plan: Plan):
        self.plan = plan
        self.hellos: list[tuple[str, dict[str, Any]]] = []
        self.runner = CaseRunner(plan, on_worker=lambda b, info: self.hellos.append((b, info)))

    def describe(self, measure_roofline: bool) -> dict[str, Any]:
        import ray

        from .machine import machine_info
        from .roofline import measure

        info = machine_info(self.plan.device)
        info["ray_node_id"] = ray.get_runtime_context().get_node_id()
        if measure_roofline:
            info["roofline"] = measure(self.plan.threads)
        return info

    def run(self, key: CaseKey, record: dict[str, Any]) -> tuple[dict[str, Any], list]:
        self.hellos = []
        record = self.runner.run(key, record)
        return record, self.hellos

    def ping(self) -> bool:
        return True


@dataclass
class _Node:
    node_id: str
    machine: str  # the id in run.json's machines table
    kind: tuple
    actor: Any = None
    busy: Any = None  # the pending call's object ref
    alive: bool = True
    probe: Any = None  # after its runner died: a fresh runner's ping, not yet answered
    probing_since: float = 0.0

    @property
    def ready(self) -> bool:
        return self.alive and self.probe is None


@dataclass
class _Case:
    key: CaseKey
    record: dict[str, Any]
    lost_on: list[str] = field(default_factory=list)  # machines it was lost on
    only: tuple | None = None  # with several kinds of node: the kind this copy of the case is for
    kind: tuple | None = None  # a retry stays on this kind of machine
    avoid: Any = None  # ... on another node than the one it was lost on, when there is one
    started: float = 0.0

    @property
    def home(self) -> tuple:
        return (self.key.problem, self.only)


def kind_label(kind: tuple) -> str:
    """A kind of machine in a case id: its CPU or GPU model and cores, e.g. AMD-EPYC-2c."""
    cpu, cores, gpu = kind
    name = "".join(c if c.isalnum() else "-" for c in str(gpu or cpu or "unknown")).strip("-")
    while "--" in name:
        name = name.replace("--", "-")
    return f"{name[:40]}-{cores}c"


def execute_on_cluster(
    plan: Plan,
    on_record: Callable[[dict[str, Any]], None],
    skip: Iterable[str] = (),
    on_worker: Callable[[str, dict[str, Any]], None] | None = None,
    on_machine: Callable[[str, dict[str, Any]], None] | None = None,
    address: str | None = None,
    selector: str | None = None,
    known_machines: dict[str, dict[str, Any]] | None = None,
) -> None:
    """Every case of ``plan`` not in ``skip``, over the chosen nodes; ``on_record`` receives
    each finished record (with its ``machine``) as it arrives, ``on_machine`` each machine's
    description once (``known_machines``: those a resumed run already has; their roofline is
    not measured again)."""
    ray = connect(address)
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    chosen = select_nodes(ray.nodes(), selector)
    remote = ray.remote(NodeRunner)
    known = dict(known_machines or {})

    started: list[Any] = []  # every runner this call starts: all killed when it ends

    def start_actor(node_id: str) -> Any:
        actor = remote.options(
            resources={RESOURCE: 1},
            num_cpus=0,
            max_restarts=0,
            max_task_retries=0,
            scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
        ).remote(plan)
        started.append(actor)
        return actor

    nodes: list[_Node] = []
    try:
        actors = {n["NodeID"]: start_actor(n["NodeID"]) for n in chosen}
        by_node = {mid: m for mid, m in known.items() if m.get("ray_node_id")}
        wanted = {
            node_id: actor.describe.remote(
                not any(m["ray_node_id"] == node_id for m in by_node.values())
            )
            for node_id, actor in actors.items()
        }
        for node_id, ref in wanted.items():
            try:
                info = ray.get(ref, timeout=plan.timeout + GRACE_S)
            except ray.exceptions.GetTimeoutError:
                raise ClusterError(
                    f"node {node_id[:8]} did not take a runner within {plan.timeout + GRACE_S:.0f} s: "
                    f"another run may hold its '{RESOURCE}' resource (`ray status` shows it in "
                    "use), or the node is overloaded; --nodes can leave it out"
                ) from None
            except ray.exceptions.RayError as e:
                raise ClusterError(
                    f"node {node_id[:8]} did not start sharedconv ({type(e).__name__}: "
                    f"{str(e).strip().splitlines()[-1][:300]}); is sharedconv installed there "
                    "(`sharedconv backends` on the node)?"
                ) from None
            mid = next((m for m, v in by_node.items() if v["ray_node_id"] == node_id), None)
            if mid is None:
                mid = f"node-{node_id[:8]}"
                known[mid] = info
                if on_machine is not None:
                    on_machine(mid, info)
            kind = machine_kind(Machine.from_dict(known[mid]))
            nodes.append(_Node(node_id, mid, kind, actors[node_id]))
        _dispatch(ray, plan, nodes, on_record, skip, on_worker, start_actor)
    finally:
        # Ctrl-C, a fault or the end: no runner outlives the run (a killed runner's worker
        # processes exit at their next read: their requests came from it)
        for actor in started:
            ray.kill(actor, no_restart=True)


def _dispatch(
    ray: Any,
    plan: Plan,
    nodes: list[_Node],
    on_record: Callable[[dict[str, Any]], None],
    skip: Iterable[str],
    on_worker: Callable[[str, dict[str, Any]], None] | None,
    start_actor: Callable[[str], Any],
) -> None:
    done = set(skip)
    queue: collections.deque[_Case] = collections.deque()
    # Nodes of one kind share the plan; with several kinds, each kind runs the whole plan (a lab
    # asks for the answer on each of its kinds of machine), its case ids marked with the kind.
    kinds = list(dict.fromkeys(n.kind for n in nodes))
    for key, decided, meta in plan_cases(plan):
        for kind in kinds if len(kinds) > 1 else [None]:
            record = {**base_record(key, plan.threads), **meta}
            if kind is not None:  # the kind in the id (one record per kind) and on its own
                record["machine_kind"] = kind_label(kind)
                record["case"] += f"@{record['machine_kind']}"
            if record["case"] in done:
                continue
            if decided is not None:
                on_record({**record, **decided})
            else:
                queue.append(_Case(key, record, only=kind))
    # The largest problems first, within each backend: the nodes take problems as they come
    # free, and the small ones last even out the load (longest processing time first).
    backends = {name: i for i, name in enumerate(plan.backends)}
    queue = collections.deque(
        sorted(
            queue,
            key=lambda c: (backends.get(c.key.backend, 0), -c.key.problem.flops_for("forward")),
        )
    )
    pending: dict[Any, tuple[_Node, _Case]] = {}
    # A problem's cases all run on one node of a kind (its home, the first to take one of them),
    # so a ranking compares timings of one machine; the queue stays backend-major, as a local run.
    home: dict[Any, _Node] = {}
    while queue or pending:
        _check_probes(ray, nodes)
        for node in nodes:
            if not (node.ready and node.busy is None and queue):
                continue
            case = next((c for c in queue if _takes(node, c, home.get(c.home), nodes)), None)
            if case is None:
                continue
            home[case.home] = node
            queue.remove(case)
            late = past_deadline(plan)
            if late is not None:
                on_record({**case.record, **late})
                continue
            case.started = time.monotonic()
            node.busy = node.actor.run.remote(case.key, dict(case.record))
            pending[node.busy] = (node, case)
        # a case waiting for a kind of machine that is gone: recorded as lost
        for case in [c for c in queue if (c.kind or c.only) is not None]:
            wanted = case.kind or case.only
            if not any(n.alive and n.kind == wanted for n in nodes):
                queue.remove(case)
                on_record(_lost(case))
        if not pending:
            if queue and not any(n.alive for n in nodes):
                while queue:
                    on_record(_lost(queue.popleft()))
            elif queue:
                time.sleep(0.2)  # a node is being probed
            continue
        # returns as soon as a case ends; the timeout bounds how late Ctrl-C and the case
        # timeout are seen (each wait is a request to the raylet, on a node's own core when the
        # head is a measuring node: not more often than this)
        ready, _ = ray.wait(list(pending), num_returns=1, timeout=1.0)
        for ref in ready:
            node, case = pending.pop(ref)
            node.busy = None
            try:
                record, hellos = ray.get(ref)
            except ray.exceptions.RayError:
                _node_failed(ray, node, case, queue, nodes, on_record, start_actor)
                continue
            record["machine"] = node.machine
            if case.lost_on:
                record["retried_after"] = f"node lost on {', '.join(case.lost_on)}"
            for backend, info in hellos:
                if on_worker is not None:
                    on_worker(backend, {**info, "machine": node.machine})
            on_record(record)
        now = time.monotonic()
        for ref, (node, case) in list(pending.items()):
            if now - case.started > plan.timeout + GRACE_S:
                pending.pop(ref)
                ray.kill(node.actor, no_restart=True)
                node.busy = None
                node.actor = start_actor(node.node_id)
                on_record(
                    {
                        **case.record,
                        "status": "timeout",
                        "reason": f"no answer from its node within {plan.timeout + GRACE_S:.0f} s "
                        "(the case timeout and a grace); its node's runner was killed",
                        "machine": node.machine,
                    }
                )


def _takes(node: _Node, case: _Case, home: _Node | None, nodes: list[_Node]) -> bool:
    """``node`` may run ``case``: a retry only on its kind of machine and, while another of
    that kind is up, not where it was lost; a problem's cases on its home node (a problem
    whose home is lost or being probed moves to the next node that is free)."""
    if case.kind not in (None, node.kind) or case.only not in (None, node.kind):
        return False
    if case.avoid is node and any(n.alive and n.kind == node.kind and n is not node for n in nodes):
        return False
    return home is None or home is node or not home.ready


def _check_probes(ray: Any, nodes: list[_Node]) -> None:
    """A node whose runner died is up again when a fresh runner answers, else lost."""
    for node in nodes:
        if node.probe is None:
            continue
        done, _ = ray.wait([node.probe], timeout=0)
        if done:
            try:
                ray.get(node.probe)
                node.probe = None
                continue
            except ray.exceptions.RayError:
                pass
        elif time.monotonic() - node.probing_since < PROBE_S:
            continue
        node.alive, node.probe = False, None
        ray.kill(node.actor, no_restart=True)
        node.actor = None


def _lost(case: _Case) -> dict[str, Any]:
    if not case.lost_on:  # never started: every node of its kind was lost before
        return {
            **case.record,
            "status": "skipped",
            "reason": "not run: every node of its kind of machine was lost during the run",
        }
    return {
        **case.record,
        "status": "crashed",
        "reason": f"node lost (on {', '.join(case.lost_on)}); no other node of its kind took it",
        "machine": case.lost_on[-1],
    }


def _node_failed(
    ray: Any,
    node: _Node,
    case: _Case,
    queue: collections.deque[_Case],
    nodes: list[_Node],
    on_record: Callable[[dict[str, Any]], None],
    start_actor: Callable[[str], Any],
) -> None:
    """The node's runner died mid-case: the node is lost, or only its runner is. A fresh runner
    is started there and probed (``_check_probes``); meanwhile the case is retried once, on
    another node of the same kind when there is one."""
    alive = {n["NodeID"] for n in ray.nodes() if n.get("Alive")}
    if node.node_id in alive:  # as far as the cluster knows yet: probe it
        node.actor = start_actor(node.node_id)
        node.probe = node.actor.ping.remote()
        node.probing_since = time.monotonic()
    else:
        node.alive = False
        node.actor = None
    case.lost_on.append(node.machine)
    if len(case.lost_on) > 1:
        on_record({**_lost(case), "reason": f"node lost twice (on {', '.join(case.lost_on)})"})
        return
    case.kind, case.avoid = node.kind, node
    if not any(n.alive and n.kind == node.kind for n in nodes):
        on_record(_lost(case))
        return
    queue.appendleft(case)
