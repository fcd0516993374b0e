"""The xcenc job's coordinator side: one coroutine per worker (``xcenc_machine``) driving the
operations of ``ops`` as ``plan`` says, the CPU bound shared by the job's encodes, and
``xcenc_coordinator``, the job built from typed values (the plan, a backend, mu's settings)."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import shlex
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import needs
from ...mu.backends import Backend, BackendError, BackendSpec, chosen_backend
from ...mu.coordinator import Coordinator
from ...mu.jobs import JobSettings
from ...mu.machines import JobContext, RunResult, WorkerHandle
from .ops import OPERATION_MODULE
from .plan import XcencParams, reencode_argv


def require_pass0_encoder(pass0: str, backend: Backend | BackendSpec) -> None:
    """With pass 0 by vpxenc on local workers, which run this machine's vpxenc: one line now if
    it is missing, rather than a failed worker per chunk later. Remote workers bring their own
    (the Lambda zip's static vpxenc, a Ray node's), which each checks when it starts."""
    if pass0 != "vpxenc":
        return
    if isinstance(backend, Backend):
        remote = backend.remote
    else:
        try:
            remote = chosen_backend(backend.name, backend.options).remote
        except BackendError:
            return  # building the backend reports it
    if not remote:
        needs.vpxenc()


# A compute step's place in the queue for a slot: lower goes first. Earliest deadline first:
# the serial chain reaches worker k only after every worker before it, and worker k's own earlier
# passes feed its chain step, so (worker, later pass first) hands the slot to the chain's head and
# to what it waits on before pass-1 work of later workers that nobody waits on yet. comp-states
# feeds no hand-off, only the job's end, so it waits behind all of them.
Priority = tuple[int, int, int]
TAIL = 1  # the class of work nothing but the job's end waits on


def step_priority(k: int, n: int, tail: bool = False) -> Priority:
    """The slot priority of worker ``k``'s compute step of pass ``n`` (``tail``: comp-states)."""
    return (TAIL if tail else 0, k, -n)


@dataclass(frozen=True)
class Grant:
    """One slot grant: who got it (``label``, ``priority``) and who else was waiting then."""

    label: str
    priority: Priority
    waiting: tuple[tuple[str, Priority], ...]


class CpuSlots:
    """Bounds how many encodes run at once on one machine, and hands a free slot to the most
    urgent waiter (``step_priority``), not the first to ask; created lazily in the job's loop.

    Only the compute commands hold a slot, never a wait for a state, so a bound cannot
    deadlock the wavefront. ``timeline`` records every grant to a step that had to wait (one
    entry per compute step at most, so bounded by the job's size).
    """

    def __init__(self, n: int | None) -> None:
        self.n = n
        self._free = n or 0
        self._seq = itertools.count()
        self._waiters: list[tuple[Priority, int, str, asyncio.Future[None]]] = []
        self.timeline: list[Grant] = []

    def _grant_next(self) -> None:
        while self._free > 0 and self._waiters:
            prio, _, label, fut = heapq.heappop(self._waiters)
            if fut.done():  # cancelled while waiting
                continue
            self.timeline.append(Grant(label, prio, tuple(
                (lb, pr) for pr, _, lb, f in sorted(self._waiters) if not f.done())))
            self._free -= 1
            fut.set_result(None)

    async def _acquire(self, prio: Priority, label: str) -> bool:
        """Take a slot; True when it had to wait for one."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return False
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (prio, next(self._seq), label, fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():  # granted just as it was cancelled
                self._release()
            raise
        return True

    def _release(self) -> None:
        self._free += 1
        self._grant_next()

    @contextlib.asynccontextmanager
    async def held_by(self, w: WorkerHandle, prio: Priority) -> AsyncIterator[None]:
        """Hold a slot for worker ``w``'s step of priority ``prio``; while it waits for one
        its state is ``wait_cpu``, then its phase again: time queued behind the bound is a
        wait, not the phase's (it would make a queued worker look like a straggler)."""
        if self.n is None:
            yield
            return
        phase = w.state
        if self._free == 0 or self._waiters:
            w.state = "wait_cpu"
        try:
            await self._acquire(prio, f"{w.id}:{phase}")
        finally:
            w.state = phase
        try:
            yield
        finally:
            self._release()


async def _compute(w: WorkerHandle, slots: CpuSlots, prio: Priority, argv: list[str] | str,
                   check: bool = True) -> RunResult:
    """Run a command on the worker, holding a CPU slot."""
    async with slots.held_by(w, prio):
        return await w.run(argv, check=check)


@dataclass(frozen=True)
class ToolResult:
    """A tool step's result, and its CPU time when it ran in the worker's interpreter (None
    for ``--tools subprocess``, whose child's CPU time the worker does not single out)."""

    run: RunResult
    cpu_s: float | None = None


async def _tool(w: WorkerHandle, slots: CpuSlots, prio: Priority, p: XcencParams,
                python: str, argv: list[str], check: bool = True, append_stdout: str | None = None
                ) -> ToolResult:
    """Run ``TOOL ARGS...`` (xc-enc, xc-dump, comp-states) on the worker as ``p.tools`` says,
    holding a CPU slot."""
    if p.tools == "subprocess":
        cmd: list[str] | str = [python, "-m", "excamera.xc.tools_main", *argv]
        if append_stdout:
            line = " ".join(shlex.quote(a) for a in cmd)
            out = shlex.quote(append_stdout)
            cmd = f"{line} > tool.out; rc=$?; cat tool.out >> {out}; cat tool.out; exit $rc"
        return ToolResult(await _compute(w, slots, prio, cmd, check=check))
    async with slots.held_by(w, prio):
        f = await w.run_op("xcenc_tool", argv=argv, check=check, append_stdout=append_stdout)
    return ToolResult(RunResult(int(f["exit_code"]), str(f["stdout"]), str(f["stderr_tail"]),
                                float(f["seconds"])), float(f["cpu_s"]))


def _step(n: int, state: str, res: ToolResult) -> dict[str, Any]:
    """A compute step's record in the worker's ``runs``: its wall time and, when known, its
    CPU time (what bench/pipeline_speed.py schedules)."""
    return {"pass": n, "step": state, "seconds": res.run.seconds, "cpu_s": res.cpu_s}


async def receive_state(w: WorkerHandle, ctx: JobContext, p: XcencParams,
                        have: dict[int, str], tag: int) -> dict[str, Any] | None:
    """Make ``in_<tag>.state`` present on the worker: from the relay, or on a retry from
    storage once the predecessor has announced it. Returns the last receive's fields (with
    its times, for ``bench/hop.py``), None when the state was already there."""
    if tag in have:
        return None
    if w.attempt > 0 and p.handoff_storage:
        await ctx.progress.wait_for(w.id - 1, f"sent_s{tag}")
        await w.retrieve(p.handoff_key(w.id - 1, tag), "handoff.blob")
        info = await w.run_op("xcenc_unpack_state", blob="handoff.blob")
        have[int(info["tag"])] = str(info["sha256"])
        return info
    ids = w.senders(w.id - 1)  # a duplicate of the predecessor sends under its own id
    while True:
        # Receiving and unpacking are one command: the message goes from the relay connection
        # to in_<tag>.state without a file or a round trip to this coordinator in between.
        info = await w.run_op("xcenc_recv_state", sender=ids if len(ids) > 1 else ids[0])
        # A restarted predecessor sends its states again: the same bytes, skipped here.
        have.setdefault(int(info["tag"]), str(info["sha256"]))
        if tag in have:
            return info


async def send_state(w: WorkerHandle, p: XcencParams, tag: int) -> dict[str, Any]:
    """Hand ``final.state`` on to worker k+1 as hand-off ``tag`` (packing and sending are one
    command); returns the state's ``sha256`` and the send's times. ``send_s<tag>``, then
    ``sent_s<tag>`` once the receiver's copy left (and the stored one, for retries and
    duplicates, is there)."""
    w.state = f"send_s{tag}"
    info = await w.run_op("xcenc_send_state", src="final.state", tag=tag,
                          codec=p.handoff_codec, local=p.handoff_local,
                          keep="send.blob" if p.handoff_storage else None)
    # The relay's receiver first: the stored copy is announced (sent_s<tag>) only once it is
    # there.
    if p.handoff_storage:
        await w.upload("send.blob", p.handoff_key(w.id, tag))
    w.state = f"sent_s{tag}"
    return info


async def xcenc_machine(w: WorkerHandle, ctx: JobContext) -> dict[str, Any]:
    p: XcencParams = ctx.params["xcenc"]
    slots: CpuSlots = ctx.params["xcenc_slots"]
    plan = p.worker_plan(w.id)
    k = w.id

    w.state = "setup"
    probe = await w.run_op("xcenc_probe")
    py = str(probe["python"])
    if p.pass0 == "vpxenc" and not probe["vpxenc"]:
        raise RuntimeError(f"worker {k}: {needs.vpxenc_missing_message('on the worker')}")
    needs_relay = bool(plan.needs) or bool(plan.send_tags)
    w.state = "retrieving"
    await w.retrieve(p.input_key(k), "input.y4m")
    if needs_relay:
        # A hand-off longer than a state of this chunk's picture size can be is refused by its
        # length prefix, before the worker reads (and allocates) any of it. (Part of the
        # retrieving phase: a relay handshake alone, starved by the other workers' encodes,
        # would make a phase short enough that stragglers get duplicated for nothing.)
        bound = await w.run_op("xcenc_message_bound", picture="input.y4m")
        await w.connect(k + 1, max_blob=int(bound["bytes"]))

    have: dict[int, str] = {}  # received tag -> sha256
    sent: dict[int, str] = {}
    sent_via: dict[int, str] = {}  # tag -> "file" (one machine's shared directory) or "relay"
    runs: list[dict[str, Any]] = []
    last_input: str | None = None  # the predecessor's state the final pass rebased onto
    for n in range(plan.passes):
        if n > 0:
            await w.run_op("xcenc_copy", pairs=[["output.ivf", "prev.ivf"],
                                                ["final.state", "prev.state"]])
        if n == plan.rekey_pass:  # a milder batch-start key frame, from a fresh state
            w.state = f"rekey_p{n}"
            await w.run_op("xcenc_fresh_state", out="fresh.state")
            res = await _tool(w, slots, step_priority(k, n), p, py, p.rekey_argv(k))
            runs.append(_step(n, w.state, res))
        elif n not in plan.needs:  # phase 1: an independent encode
            w.state = "pass0" if n == 0 else f"pass0_p{n}"
            argv = p.pass0_argv(k)
            if p.pass0 == "vpxenc":
                res = ToolResult(await _compute(w, slots, step_priority(k, n), argv))
            else:
                res = await _tool(w, slots, step_priority(k, n), p, py, argv)
            runs.append(_step(n, w.state, res))
            # The decoder state is only needed to hand on or to rebase from (mu also skipped
            # xc-dump when every chunk stands alone).
            if plan.passes > 1 or plan.out_tags.get(n) in plan.send_tags:
                w.state = "xcdump" if n == 0 else f"xcdump_p{n}"
                res = await _tool(w, slots, step_priority(k, n), p, py,
                                  ["xc-dump", "output.ivf", "final.state"])
                runs.append(_step(n, w.state, res))
        else:
            need = plan.needs[n]
            w.state = f"wait_state_p{n}"
            for tag in (need.inp, need.prev):
                if tag is not None:
                    await receive_state(w, ctx, p, have, tag)
            w.state = f"reencode_p{n}"
            res = await _tool(w, slots, step_priority(k, n), p, py,
                              reencode_argv(["xc-enc"], need, p.pass_flags(n, k)))
            last_input = have[need.inp] if n == plan.passes - 1 else None
            runs.append({**_step(n, w.state, res), "input_state": have[need.inp],
                         "prev_state": have[need.prev] if need.prev is not None else None})
        tag = plan.out_tags.get(n)
        if tag is not None and tag in plan.send_tags:
            info = await send_state(w, p, tag)
            sent[tag], sent_via[tag] = str(info["sha256"]), str(info["via"])

    await w.run_op("xcenc_touch", path="comp.txt")
    final = await w.run_op("xcenc_digest", path="final.state")
    converged: bool | None = None
    comp = ""
    if plan.passes >= 2:
        w.state = "compare"
        # comp-states' report goes to comp.txt and back here; its exit code is the verdict.
        # A worker that did not converge still uploads (as mu's did): its successor's join is
        # then not exact, which the job's summary reports (``joins``), but every chunk and
        # every report is there to inspect.
        tool = await _tool(w, slots, step_priority(k, plan.passes, tail=True), p, py,
                           ["comp-states", "prev.state", "final.state"],
                           check=False, append_stdout="comp.txt")
        runs.append(_step(plan.passes, w.state, tool))
        res = tool.run
        if res.exit_code not in (0, 1):
            raise RuntimeError(f"worker {k}: comp-states failed: {res.stderr_tail.strip()}")
        converged = res.exit_code == 0
        comp = res.stdout.strip()
    quality: dict[str, Any] | None = None
    if p.measure:
        w.state = "measure"
        final_need = plan.needs.get(plan.passes - 1)
        entry = None if final_need is None else f"in_{final_need.inp}.state"
        async with slots.held_by(w, step_priority(k, plan.passes, tail=True)):
            quality = await w.run_op("xcenc_measure", ivf="output.ivf", source="input.y4m",
                                     entry=entry)
        runs.append({"pass": plan.passes, "step": w.state, "seconds": quality["seconds"],
                     "cpu_s": quality["cpu_s"]})
    w.state = "upload"
    await w.upload_many(["output.ivf", "comp.txt"], [p.output_key(k), p.comp_key(k)])
    w.state = "uploaded"
    if needs_relay:
        await w.close_connect()
    return {
        "chunk": k + p.offset,
        "passes": plan.passes,
        "output": p.output_key(k),
        "comp_txt": p.comp_key(k),
        "converged": converged,
        "comp": comp,
        "received": have,
        "sent": sent,
        "sent_via": sent_via,
        "final_state": final["sha256"],
        "last_input": last_input,
        "runs": runs,
        "quality": quality,
    }


def job_params(p: XcencParams) -> dict[str, Any]:
    """The Coordinator ``params`` for this job."""
    return {"xcenc": p, "xcenc_slots": CpuSlots(p.cpu_slots)}


def xcenc_coordinator(params: XcencParams, backend: Backend, storage_url: str,
                      settings: JobSettings, relay: tuple[str, int] | None = None
                      ) -> Coordinator:
    """The xcenc job as a coordinator: one worker per chunk of ``params``, its outputs in
    ``storage_url``; workers pair through ``relay`` (host, port), or through a relay the
    coordinator runs itself when None."""
    return Coordinator(
        "xcenc",
        params.n_parts,
        backend,
        storage_url,
        xcenc_machine,
        params=job_params(params),
        operation_modules=[OPERATION_MODULE],
        relay=relay,
        embedded_relay=relay is None,
        **settings.coordinator_kwargs(),
    )


def clean_handoff(p: XcencParams, storage_url: str) -> None:
    """Remove the ``<vid>/handoff/`` states of this job's chunks (they only serve retries)."""
    from ...mu.storage import open_storage

    async def go() -> None:
        st = open_storage(storage_url)
        chunks = {p.chunk(k) for k in range(p.n_parts)}
        for key in await st.list(f"{p.vid_name}/handoff/"):
            if Path(key).name.split(".")[0] in chunks:
                await st.delete(key)

    asyncio.run(go())
