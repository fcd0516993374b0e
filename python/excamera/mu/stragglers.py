"""Straggler mitigation: a duplicate for a worker that is far slower than its peers in a phase.

The rule is gg's (Fouladi et al., ATC '19): when a worker has spent ``k`` times longer in a
phase than the median of its peers in that phase, the coordinator launches a duplicate of it,
with a fresh token and certificate; whichever instance finishes its machine first wins and the
other is killed. Written here from that description; the decisions and their reasons:

* **Phases** are the states a machine records (``w.state = "pass0"``). The coordinator's own
  states (``launching``, ``connected`` and the terminal ones) are not phases: a slow launch is
  what ``--spares`` is for. A state whose name starts with ``wait`` is a wait on other workers
  (xcenc's ``wait_state_p<n>``), where a duplicate would wait just as long, so it never counts.
* **Peers' median**: the durations of the workers that have left the phase (the first instance
  of each to leave it). A wait entered from a phase pauses it (xcenc sets ``pass0``, then
  queues for a CPU slot as ``wait_cpu``, then runs ``pass0``): the stints before and after
  the wait are one duration, so a queued worker is not a peer that took no time. A decision
  needs at least half of the workers that entered the phase to have left it, so a phase that
  every worker runs at once is not judged by its fastest few.
* **Floor**: a phase that has lasted less than ``floor_s`` seconds is never judged slow, however
  short its median (a duplicate costs a launch and the whole machine again).
* **Budget**: at most ``max(1, max_fraction * n)`` duplicates per job (5 %), one per worker, and
  a duplicate is never duplicated itself.

What a duplicate means elsewhere (see :mod:`excamera.mu.coordinator`): it is another attempt
of the same worker id for the machine (``w.attempt > 0``, so a restartable machine reads what
it receives from storage, as a retry does), and its outputs go to the same deterministic keys.
For the relay, which refuses a second connection of a connected (job, id) so that a leaked
credential cannot take over a session, the duplicate has an id of its own, ``duplicate_id``;
receivers of worker k accept frames from k's id and from its duplicate's (``recv_blob``'s
``from`` lists both), so a receiver is fed by whichever instance sends first and skips the
second copy of a state it already has.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

from .machines import Transition

#: States the coordinator records itself; a machine's own states are the phases.
COORDINATOR_STATES = frozenset({"launching", "connected", "done", "lost", "error", "superseded"})
TERMINAL = frozenset({"done", "lost", "error", "superseded"})
WAIT_PREFIX = "wait"


def is_phase(state: str) -> bool:
    """Whether time spent in ``state`` can make a worker a straggler."""
    return state not in COORDINATOR_STATES and not state.startswith(WAIT_PREFIX)


@dataclass(frozen=True)
class StragglerPolicy:
    """When to duplicate (``k`` = 0 turns mitigation off)."""

    k: float = 3.0
    floor_s: float = 1.0
    max_fraction: float = 0.05
    min_passed: float = 0.5

    def __post_init__(self) -> None:
        if not (self.k == 0 or 1 < self.k <= 1000):  # also refuses NaN
            raise ValueError(f"the straggler factor k must be 0 (off) or in (1, 1000], "
                             f"not {self.k}")
        if not 0 <= self.floor_s <= 86400:
            raise ValueError(f"the straggler floor must be 0..86400 s, not {self.floor_s}")
        if not 0 < self.max_fraction <= 1 or not 0 < self.min_passed <= 1:
            raise ValueError("the duplicate fraction and the passed fraction are in (0, 1]")

    @property
    def enabled(self) -> bool:
        return self.k > 0

    def budget(self, n_workers: int) -> int:
        """How many duplicates a job of ``n_workers`` may launch in all."""
        if not self.enabled:
            return 0
        return max(1, int(self.max_fraction * n_workers))

    def is_straggling(self, elapsed: float, median: float, passed: int, entered: int) -> bool:
        """The rule for one worker: ``elapsed`` seconds in a phase whose ``passed`` of
        ``entered`` workers left it after ``median`` seconds (median of those who left)."""
        if not self.enabled or passed < 1 or passed < math.ceil(self.min_passed * entered):
            return False
        return elapsed >= self.floor_s and elapsed > self.k * median


@dataclass(frozen=True)
class Straggler:
    """One instance judged slow: worker, attempt, phase, time in it and its peers' median."""

    worker: int
    attempt: int
    phase: str
    elapsed: float
    median: float
    passed: int

    @property
    def ratio(self) -> float:
        return self.elapsed / self.median if self.median > 0 else math.inf

    def describe(self) -> str:
        return (f"worker {self.worker} (attempt {self.attempt}) has spent {self.elapsed:.2f} s "
                f"in {self.phase}, {self.ratio:.1f}x the median {self.median:.2f} s of "
                f"{self.passed} peers")


@dataclass
class _Phase:
    entered: set[int] = field(default_factory=set)  # worker ids
    passed: set[int] = field(default_factory=set)
    durations: list[float] = field(default_factory=list)  # sorted; first leave per worker
    # (worker, attempt) -> entry time; insertion order is entry order (times only grow)
    running: dict[tuple[int, int], float] = field(default_factory=dict)

    def median(self) -> float:
        d = self.durations
        n = len(d)
        return d[n // 2] if n % 2 else (d[n // 2 - 1] + d[n // 2]) / 2


class PhaseClock:
    """Per phase: who entered it, who left it after how long, who is in it since when.

    An observer of the coordinator's state log (``on_transition``); times are the log's
    (seconds since the job started). Each transition costs O(log n) plus a list insertion,
    and a scan for stragglers looks only at each phase's longest-running instances.
    """

    def __init__(self) -> None:
        self.phases: dict[str, _Phase] = {}
        self._at: dict[tuple[int, int], tuple[str, float]] = {}  # instance -> (phase, since)
        # An instance that went from a phase into a wait (xcenc's pass0 -> wait_cpu, queued
        # for a CPU slot): (phase, seconds spent in it so far). Back in the same phase, its
        # time goes on; anything else ends the phase with the time it had.
        self._paused: dict[tuple[int, int], tuple[str, float]] = {}
        self._carried: dict[tuple[int, int], float] = {}  # spent before the running stint

    def _passed(self, name: str, worker: int, duration: float) -> None:
        ph = self.phases[name]
        if worker not in ph.passed:
            ph.passed.add(worker)
            bisect.insort(ph.durations, duration)

    def on_transition(self, tr: Transition) -> None:
        key = (tr.worker, tr.attempt)
        prev = self._at.pop(key, None)
        waits = tr.state not in TERMINAL and tr.state.startswith(WAIT_PREFIX)
        carried = 0.0
        if prev is not None:
            name, since = prev
            self.phases[name].running.pop(key, None)
            spent = tr.t - since + self._carried.pop(key, 0.0)
            if waits:
                self._paused[key] = (name, spent)
            else:
                self._passed(name, tr.worker, spent)
        elif key in self._paused and not waits:
            name, spent = self._paused.pop(key)
            if name == tr.state:
                carried = spent
            else:
                self._passed(name, tr.worker, spent)
        if tr.state in TERMINAL or not is_phase(tr.state):
            return
        ph = self.phases.setdefault(tr.state, _Phase())
        ph.entered.add(tr.worker)
        # A resumed stint is timed from now (the running order stays the entry order, which
        # the scan relies on); what it spent before the wait counts when it leaves.
        ph.running[key] = tr.t
        self._at[key] = (tr.state, tr.t)
        if carried:
            self._carried[key] = carried

    def forget(self, worker: int, attempt: int) -> None:
        """Stop timing an instance that ended without a transition of its own."""
        self._paused.pop((worker, attempt), None)
        self._carried.pop((worker, attempt), None)
        prev = self._at.pop((worker, attempt), None)
        if prev is not None:
            self.phases[prev[0]].running.pop((worker, attempt), None)

    def stragglers(self, now: float, policy: StragglerPolicy) -> Iterator[Straggler]:
        """Instances that the policy judges slow at time ``now``, longest-running first in
        each phase."""
        for name, ph in self.phases.items():
            if not ph.running or not ph.durations:
                continue
            median = ph.median()
            threshold = max(policy.floor_s, policy.k * median)
            for (worker, attempt), since in ph.running.items():
                elapsed = now - since
                if elapsed <= threshold:
                    break  # everyone after entered later
                if policy.is_straggling(elapsed, median, len(ph.passed), len(ph.entered)):
                    yield Straggler(worker, attempt, name, elapsed, median, len(ph.passed))

    def slowest(self, now: float) -> Straggler | None:
        """The instance furthest above its phase's median right now (the live view's line),
        or, before any phase has a median, the one longest in its phase."""
        best: Straggler | None = None
        for name, ph in self.phases.items():
            if not ph.running:
                continue
            (worker, attempt), since = next(iter(ph.running.items()))
            median = ph.median() if ph.durations else 0.0
            cand = Straggler(worker, attempt, name, now - since, median, len(ph.passed))
            key = (cand.ratio if median > 0 else 0.0, cand.elapsed)
            if best is None or key > (best.ratio if best.median > 0 else 0.0, best.elapsed):
                best = cand
        return best
