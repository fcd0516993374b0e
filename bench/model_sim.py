"""A discrete-event simulation of a task graph on launched workers: the engine of bench/model.py.

Resources:

- a **worker** (one Lambda vCPU): runs its tasks one after another, in the order they were
  added, from the moment it is up (launched, then cold- or warm-started);
- a **server** (the relay): forwards up to ``capacity`` messages at once, first come first
  served, each for ``cost`` seconds (its bytes over the server's throughput).

A task starts when its resource is free, every dependency has ended and each dependency's edge
latency has passed. The launcher starts workers in the order they were added, under Lambda's
rules: at most ``concurrency`` alive at once (the account quota, "the workers"); a new execution
environment takes a token from its function's bucket (``burst`` tokens, refilled continuously at
``refill_per_s``: AWS's 1,000 per 10 s per function, unused capacity not banked); a finished
worker's environment is reused warm without a token; the coordinator sends at most
``invoke_rate`` invocations per second.

Each task remembers what it waited for last, so :meth:`Simulation.critical_path` can walk back
from the last task to time 0 and say where the makespan went, by task kind.
"""

from __future__ import annotations

import heapq
import math
from collections import defaultdict, deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LaunchModel:
    concurrency: int  # workers alive at once (the account's concurrency quota)
    cold_start: float = 0.0  # invoke -> worker up, new environment (s)
    warm_start: float = 0.0  # invoke -> worker up, reused environment (s)
    functions: int = 1  # identical functions the workers are spread over
    burst: float = math.inf  # new environments a function may start at once
    refill_per_s: float = math.inf  # ... and per second after that
    invoke_rate: float = math.inf  # the coordinator's invocations per second


@dataclass(eq=False)
class Task:
    name: str
    kind: str  # the category the critical path is summed by
    resource: Worker | Server
    cost: float
    deps: list[tuple[Task, float]] = field(default_factory=list)  # (task, edge latency)
    start: float | None = None
    end: float | None = None
    ready_at: float | None = None  # every dependency ended and its latency passed
    # What fixed the start: ("dep", task, latency) | ("prev", task) | ("up", worker) |
    # ("queue", task) (the server's previous message) | ("zero",).
    bound: tuple = ("zero",)
    _waiting: int = 0
    _dependents: list[tuple[Task, float]] = field(default_factory=list)


@dataclass(eq=False)
class Worker:
    name: str
    tasks: list[Task] = field(default_factory=list)
    invoked_at: float | None = None
    up_at: float | None = None
    warm: bool = False
    function: int = -1
    # Why the invocation went out when it did: ("zero",), ("free", worker) (a worker's end
    # freed concurrency), ("burst",) (a function's tokens), ("invoke",) (the coordinator's rate).
    launch_bound: tuple = ("zero",)
    _next: int = 0
    _busy: bool = False
    _last: Task | None = None

    @property
    def end(self) -> float | None:
        return self.tasks[-1].end if self.tasks else self.up_at


@dataclass(eq=False)
class Server:
    name: str
    capacity: int = 1
    _busy: int = 0
    _queue: list = field(default_factory=list)  # (ready_at, seq, task)
    _last: Task | None = None


class SimulationError(RuntimeError):
    """The graph cannot run to the end (a cycle, or a worker waiting on a later one)."""


class Simulation:
    def __init__(self, launch: LaunchModel) -> None:
        if launch.concurrency < 1 or launch.functions < 1:
            raise ValueError("the launch model needs at least one worker and one function")
        self.launch = launch
        self.workers: list[Worker] = []
        self.servers: list[Server] = []
        self.tasks: list[Task] = []
        self._events: list = []
        self._seq = 0

    # -- building the graph --------------------------------------------------------------
    def worker(self, name: str) -> Worker:
        w = Worker(name)
        self.workers.append(w)
        return w

    def server(self, name: str, capacity: int = 1) -> Server:
        s = Server(name, capacity)
        self.servers.append(s)
        return s

    def task(self, name: str, kind: str, resource: Worker | Server, cost: float,
             deps: list[tuple[Task, float]] | None = None) -> Task:
        if cost < 0:
            raise ValueError(f"task {name}: negative cost {cost}")
        t = Task(name, kind, resource, cost, list(deps or []))
        for d, lat in t.deps:
            if lat < 0:
                raise ValueError(f"task {name}: negative latency {lat} from {d.name}")
            d._dependents.append((t, lat))
        t._waiting = len(t.deps)
        if isinstance(resource, Worker):
            resource.tasks.append(t)
        self.tasks.append(t)
        return t

    # -- running it ----------------------------------------------------------------------
    def _push(self, time: float, kind: str, obj: object) -> None:
        self._seq += 1
        heapq.heappush(self._events, (time, self._seq, kind, obj))

    def run(self) -> float:
        """Simulate; returns the makespan (the last task's end, or the last worker's start)."""
        lm = self.launch
        self._pending = deque(self.workers)
        self._alive = 0
        self._tokens = [float(lm.burst)] * lm.functions
        self._refilled = [0.0] * lm.functions
        self._idle = [0] * lm.functions
        self._next_invoke = 0.0
        self._retry_at: float | None = None
        self._freed_by: deque[Worker] = deque()
        for t in self.tasks:
            if not t.deps:
                t.ready_at = 0.0
                if isinstance(t.resource, Server):
                    self._push(0.0, "ready", t)
        self._launch(0.0)
        while self._events:
            now, _, kind, obj = heapq.heappop(self._events)
            if kind == "up":
                obj.up_at = now
                if obj.tasks:
                    self._dispatch_worker(obj, now)
                else:
                    self._release(obj, now)
            elif kind == "ready":
                self._on_ready(obj, now)
            elif kind == "end":
                self._on_end(obj, now)
            elif kind == "launch":
                self._retry_at = None
                self._launch(now)
        unfinished = [t.name for t in self.tasks if t.end is None]
        if unfinished or self._pending:
            raise SimulationError(f"{len(unfinished)} tasks never ran (first: "
                                  f"{unfinished[:1]}); a dependency cycle or a worker waiting "
                                  "on one launched after it with no room to launch")
        return max([t.end for t in self.tasks] + [w.up_at or 0.0 for w in self.workers],
                   default=0.0)

    def _launch(self, now: float) -> None:
        lm = self.launch
        while self._pending and self._alive < lm.concurrency:
            if self._next_invoke > now:
                self._retry(self._next_invoke)
                return
            warm = next((f for f in range(lm.functions) if self._idle[f] > 0), None)
            f = warm
            if f is None:
                for g in range(lm.functions):
                    gained = (now - self._refilled[g]) * lm.refill_per_s if now > \
                        self._refilled[g] else 0.0
                    self._tokens[g] = min(lm.burst, self._tokens[g] + gained)
                    self._refilled[g] = now
                f = max(range(lm.functions), key=lambda g: self._tokens[g])
                # (A token a rounding error short of whole counts: waiting for the rest
                # could schedule a retry at this very time, for ever.)
                if self._tokens[f] < 1 - 1e-9:
                    self._retry(now + max(1e-6, (1 - self._tokens[f]) / lm.refill_per_s))
                    return
                self._tokens[f] = max(0.0, self._tokens[f] - 1)
            else:
                self._idle[f] -= 1
            w = self._pending.popleft()
            w.function, w.warm, w.invoked_at = f, warm is not None, now
            if now == 0.0:
                w.launch_bound = ("zero",)
            elif self._freed_by:
                w.launch_bound = ("free", self._freed_by.popleft())
            elif self._next_invoke == now and lm.invoke_rate != math.inf:
                w.launch_bound = ("invoke",)
            else:
                w.launch_bound = ("burst",)
            self._alive += 1
            if lm.invoke_rate != math.inf:
                self._next_invoke = now + 1 / lm.invoke_rate
            self._push(now + (lm.warm_start if w.warm else lm.cold_start), "up", w)
        self._freed_by.clear()

    def _release(self, w: Worker, now: float) -> None:
        self._alive -= 1
        self._idle[w.function] += 1
        self._freed_by.append(w)
        self._launch(now)

    def _retry(self, at: float) -> None:
        if self._retry_at is None or at < self._retry_at:
            self._retry_at = at
            self._push(at, "launch", None)

    def _on_ready(self, t: Task, now: float) -> None:
        if isinstance(t.resource, Worker):
            self._dispatch_worker(t.resource, now)
        else:
            s = t.resource
            self._seq += 1
            heapq.heappush(s._queue, (t.ready_at, self._seq, t))
            self._dispatch_server(s, now)

    def _dispatch_worker(self, w: Worker, now: float) -> None:
        if w.up_at is None or w._busy or w._next >= len(w.tasks):
            return
        t = w.tasks[w._next]
        if t.ready_at is None or t.ready_at > now:
            return
        # The latest of: the worker coming up, its previous task, each dependency's arrival.
        cands: list[tuple[float, tuple]] = [(w.up_at, ("up", w))]
        if w._last is not None:
            cands.append((w._last.end, ("prev", w._last)))
        cands += [(d.end + lat, ("dep", d, lat)) for d, lat in t.deps]
        t.bound = max(cands, key=lambda c: c[0])[1]
        w._busy = True
        self._start(t, now)

    def _dispatch_server(self, s: Server, now: float) -> None:
        while s._busy < s.capacity and s._queue:
            ready, _, t = heapq.heappop(s._queue)
            if ready < now and s._last is not None and s._last.end == now:
                t.bound = ("queue", s._last)
            else:
                t.bound = max([(d.end + lat, ("dep", d, lat)) for d, lat in t.deps],
                              key=lambda c: c[0], default=(0.0, ("zero",)))[1]
            s._busy += 1
            self._start(t, now)

    def _start(self, t: Task, now: float) -> None:
        t.start = now
        self._push(now + t.cost, "end", t)

    def _on_end(self, t: Task, now: float) -> None:
        t.end = now
        r = t.resource
        if isinstance(r, Worker):
            r._busy, r._last = False, t
            r._next += 1
            if r._next == len(r.tasks):
                self._release(r, now)
            else:
                self._dispatch_worker(r, now)
        else:
            r._busy -= 1
            r._last = t
            self._dispatch_server(r, now)
        for d, _ in t._dependents:
            d._waiting -= 1
            if d._waiting == 0:
                d.ready_at = max(x.end + lat for x, lat in d.deps)
                self._push(d.ready_at, "ready", d)

    # -- reading the result --------------------------------------------------------------
    def critical_path(self) -> dict[str, float]:
        """Seconds of the makespan by cause, walking back from the last task to time 0:
        each task's kind; "latency" for edge latencies; "queue:<server>" for the other
        messages a server forwarded while one on the path waited; "cold start" / "warm
        start"; "launch: waiting for a free worker" (concurrency); "launch: burst scaling" /
        "launch: invoke rate" for the whole wait before an invocation, named by the limit
        that held it last (Lambda's scaling, or the coordinator). The parts add up to the
        makespan."""
        out: dict[str, float] = defaultdict(float)
        ends = [t for t in self.tasks if t.end is not None]
        if not ends:
            return {}
        t: Task | None = max(ends, key=lambda x: x.end)
        w: Worker | None = None
        queued = False  # t is a message that another one waited behind
        while t is not None or w is not None:
            if t is not None:
                out[f"queue:{t.resource.name}" if queued else t.kind] += t.cost
                b = t.bound
                queued = b[0] == "queue"
                if b[0] == "dep":
                    out["latency"] += t.start - b[1].end
                    t = b[1]
                elif b[0] == "prev":
                    t = b[1]
                elif b[0] == "queue":
                    out[f"queue:{t.resource.name}"] += t.start - b[1].end
                    t = b[1]
                elif b[0] == "up":
                    w, t = b[1], None
                else:  # ready at 0 on a server
                    out["idle"] += t.start
                    t = None
            else:
                out["warm start" if w.warm else "cold start"] += w.up_at - w.invoked_at
                lb = w.launch_bound
                if lb[0] == "free":
                    out["launch: waiting for a free worker"] += w.invoked_at - lb[1].end
                    if lb[1].tasks:
                        t, w = lb[1].tasks[-1], None
                    else:
                        w = lb[1]
                    continue
                if lb[0] == "burst":
                    out["launch: burst scaling"] += w.invoked_at
                elif lb[0] == "invoke":
                    out["launch: invoke rate"] += w.invoked_at
                w = None
        return {k: v for k, v in out.items() if v > 1e-12}


@dataclass(frozen=True)
class ChunkCosts:
    """Seconds on one worker (or the relay, for ``relay``) for one chunk's steps."""

    retrieve: float  # the chunk's raw frames from storage
    pass0: float  # vpxenc, mu's settings
    xcdump: float  # decode pass 0's output to its final state
    # The second chunk of a batch: rebase onto the first's final state, first frame converted
    # and every frame decided anew (its final pass)
    pass1_final: float
    pass1: float  # later chunks: rebase onto the predecessor's pass-0 state (Realtime)
    redecide: float  # ... every frame decided anew on the predecessor's pass-1 state
    pass3: float  # ... that output rebased onto the predecessor's final state: the hop
    pack: float  # hash a state into its hand-off message (handoff.pack), sender side
    unpack: float  # check its length and hash, load it (State.from_bytes), receiver side
    relay: float  # the relay forwarding one state message (its bytes / throughput)
    upload: float  # the chunk's output to storage
    net_latency: float = 0.0  # one way, worker <-> relay


def excamera_graph(sim: Simulation, chunks: int, batch: int, c: ChunkCosts,
                   relays: int = 1) -> list[Worker]:
    """ExCamera[chunk, batch]'s batch mode as ``excamera encode`` plans it (``pipelines.xcenc``:
    the re-decide pass, one level), one worker per chunk, in ``machine.xcenc_machine``'s order.
    Chunk k is number p = k mod batch of its batch. Every worker retrieves, runs pass 0 and
    xc-dump. p = 0 keeps its key frame and hands its state on. p = 1 hands on its pass-0
    state, then rebases onto p = 0's state with every frame decided anew (``pass1_final``) and
    hands that on: its final state, which is also what p = 2 re-decides against. p >= 2 hands
    on its pass-0 state; rebases onto p-1's pass-0 state (pass 1) and hands that on; decides
    every frame anew against p-1's pass-1 state (the re-decide pass, parallel); then rebases
    that onto p-1's final state (pass 3, the serial hop) and hands the result on. The last
    chunk of a batch hands nothing on. Each hand-off: pack on the sender, forwarding by a
    relay, unpack on the receiver, a network latency on either side of the relay. Every
    worker ends with its upload. (Chunk 0's milder re-encoded key frame is left out.)"""
    relay = sim.server("relay", relays)
    lat = c.net_latency
    workers: list[Worker] = []
    # The predecessor's states as forwarded by the relay: pass 0's, pass 1's and the final.
    p0_msg: Task | None = None
    p1_msg: Task | None = None
    final_msg: Task | None = None
    for k in range(chunks):
        p = k % batch
        last = p == batch - 1 or k == chunks - 1
        w = sim.worker(f"w{k}")
        workers.append(w)

        def send(what: str, src: Task, w: Worker = w, k: int = k,
                 last: bool = last) -> Task | None:
            if last:
                return None
            packed = sim.task(f"{k}:pack_{what}", "pack", w, c.pack, [(src, 0.0)])
            return sim.task(f"{k}:relay_{what}", "relay", relay, c.relay, [(packed, lat)])

        def unpack(what: str, msg: Task | None, w: Worker = w, k: int = k) -> Task:
            assert msg is not None
            return sim.task(f"{k}:unpack_{what}", "unpack", w, c.unpack, [(msg, lat)])

        sim.task(f"{k}:retrieve", "retrieve", w, c.retrieve)
        sim.task(f"{k}:pass0", "pass0", w, c.pass0)
        dump = sim.task(f"{k}:xcdump", "xcdump", w, c.xcdump)
        my_p0 = my_p1 = my_final = None
        if p == 0:
            my_final = send("final", dump)
        elif p == 1:
            my_p0 = send("p0", dump)
            got = unpack("final", final_msg)
            out = sim.task(f"{k}:pass1_final", "pass1_final", w, c.pass1_final, [(got, 0.0)])
            my_final = my_p1 = send("final", out)
        else:
            my_p0 = send("p0", dump)
            got = unpack("p0", p0_msg)
            one = sim.task(f"{k}:pass1", "pass1", w, c.pass1, [(got, 0.0)])
            my_p1 = send("p1", one)
            # After the second chunk, its final state is its pass-1 state: one message.
            got = unpack("p1", p1_msg) if p1_msg is not final_msg else unpack("final", final_msg)
            sim.task(f"{k}:redecide", "redecide", w, c.redecide, [(got, 0.0)])
            if p1_msg is not final_msg:
                got = unpack("final", final_msg)
            out = sim.task(f"{k}:pass3", "pass3", w, c.pass3, [(got, 0.0)])
            my_final = send("final", out)
        sim.task(f"{k}:upload", "upload", w, c.upload)
        p0_msg, p1_msg, final_msg = my_p0, my_p1, my_final
    return workers
