"""Watching a job: the ``-O`` transitions file and the live status view.

Both are observers of the coordinator's :class:`~excamera.mu.machines.StateLog`: they are told
of each transition as it happens. The JSON-lines file is written line by line (and flushed), so
even a job that fails or is interrupted leaves a complete record of what happened up to then.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

from .machines import Transition
from .stragglers import PhaseClock, Straggler

TERMINAL = {"done": "done", "error": "error", "lost": "lost"}
ENDED = {"done", "error", "lost", "superseded"}


class JsonLinesRecorder:
    """Writes ``{"worker": k, "attempt": a, "state": s, "t": seconds}`` per transition."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._f: IO[str] | None = open(self.path, "w")  # noqa: SIM115

    def on_transition(self, tr: Transition) -> None:
        if self._f is not None:
            self._f.write(json.dumps(tr.to_json()) + "\n")
            self._f.flush()

    def record(self, obj: dict[str, Any]) -> None:
        """Write one record that is not a transition (the job's cost, at the end)."""
        if self._f is not None:
            self._f.write(json.dumps(obj) + "\n")
            self._f.flush()

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class LiveStatus:
    """A rich Live view: per-worker state grid, counts of active/done/error, elapsed time,
    retries and straggler duplicates, and the slowest phase in progress (which worker, in
    which phase, for how long, against the median of the peers that finished it).

    It refreshes from an asyncio task at a fixed rate instead of on every transition, so a
    thousand transitions a second cost a thousand dict updates, not a thousand redraws, and no
    refresh thread is started.

    Everything comes from the transitions: a ``launching`` of attempt > 0 is a duplicate when
    another attempt of that worker is still running, else a retry; ``superseded`` ends the
    instance that lost the race (its worker's state stays the winner's).
    """

    def __init__(self, n_workers: int, title: str = "", refresh: float = 0.25,
                 console: Any = None) -> None:
        self.n_workers = n_workers
        self.title = title
        self.refresh = refresh
        self.console = console
        self.states: dict[int, str] = {}
        self.attempts: dict[int, int] = {}
        self.t0 = time.monotonic()
        self.retries = 0
        self.duplicates = 0
        self.duplicates_won = 0
        self.phases = PhaseClock()
        self._running: dict[int, set[int]] = {}  # worker -> attempts not ended
        self._duplicate: set[tuple[int, int]] = set()
        self._log_t0: float | None = None  # the job's clock, as transitions give it
        self._task: asyncio.Task[None] | None = None
        self._live: Any = None

    def on_transition(self, tr: Transition) -> None:
        if self._log_t0 is None:
            self._log_t0 = time.monotonic() - tr.t
        self.phases.on_transition(tr)
        running = self._running.setdefault(tr.worker, set())
        if tr.state == "launching" and tr.attempt > 0:
            if running - {tr.attempt}:
                self.duplicates += 1
                self._duplicate.add((tr.worker, tr.attempt))
            else:
                self.retries += 1
        if tr.state in ENDED:
            running.discard(tr.attempt)
            if tr.state == "done" and (tr.worker, tr.attempt) in self._duplicate:
                self.duplicates_won += 1
        else:
            running.add(tr.attempt)
        if tr.state == "superseded":
            return  # the loser's end says nothing of its worker
        self.states[tr.worker] = tr.state
        self.attempts[tr.worker] = tr.attempt

    def counts(self) -> dict[str, int]:
        c = Counter(TERMINAL.get(s, "active") for s in self.states.values())
        c["waiting"] = self.n_workers - len(self.states)
        return dict(c)

    def slowest(self) -> Straggler | None:
        """The instance furthest above its phase's median now (see PhaseClock.slowest)."""
        if self._log_t0 is None:
            return None
        return self.phases.slowest(time.monotonic() - self._log_t0)

    def slowest_line(self) -> str:
        slow = self.slowest()
        if slow is None:
            return "slowest phase: -"
        against = (f", {slow.ratio:.1f}x its median {slow.median:.2f} s ({slow.passed} done)"
                   if slow.median > 0 else ", no peer has finished it yet")
        return (f"slowest phase: worker {slow.worker} in {slow.phase} for "
                f"{slow.elapsed:.1f} s{against}")

    def render(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        counts = self.counts()
        elapsed = time.monotonic() - self.t0
        head = Table.grid(padding=(0, 2))
        head.add_row(
            Text(self.title, style="bold"),
            f"elapsed {elapsed:7.1f} s",
            Text(f"active {counts.get('active', 0)}", style="cyan"),
            Text(f"done {counts.get('done', 0)}", style="green"),
            Text(f"error {counts.get('error', 0) + counts.get('lost', 0)}", style="red"),
            f"not started {counts.get('waiting', 0)}",
        )
        outer = Table.grid()
        outer.add_row(head)
        extra = Table.grid(padding=(0, 2))
        extra.add_row(
            Text(f"retries {self.retries}", style="yellow" if self.retries else ""),
            Text(f"duplicates {self.duplicates} (won {self.duplicates_won})",
                 style="yellow" if self.duplicates else ""),
            self.slowest_line(),
        )
        outer.add_row(extra)
        if self.n_workers <= 64:
            grid = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
            grid.add_column("worker", justify="right")
            grid.add_column("state")
            grid.add_column("try", justify="right")
            for k in sorted(self.states):
                state = self.states[k]
                style = {"done": "green", "error": "red", "lost": "red"}.get(state, "cyan")
                grid.add_row(str(k), Text(state, style=style), str(self.attempts.get(k, 0) + 1))
            outer.add_row(grid)
        else:
            by_state = Counter(self.states.values())
            grid = Table(show_header=True, header_style="bold", box=None, padding=(0, 1))
            grid.add_column("state")
            grid.add_column("workers", justify="right")
            for state, n in sorted(by_state.items(), key=lambda kv: -kv[1]):
                grid.add_row(state, str(n))
            outer.add_row(grid)
        return outer

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh)
            self._live.update(self.render(), refresh=True)

    async def __aenter__(self) -> LiveStatus:
        from rich.console import Console
        from rich.live import Live

        console = self.console or Console(stderr=True)
        self._live = Live(self.render(), console=console, auto_refresh=False, transient=False)
        self._live.start()
        self._task = asyncio.create_task(self._loop())
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._live.update(self.render(), refresh=True)
        self._live.stop()
