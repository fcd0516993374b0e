"""The ExCamera encoder job (mu's xcenc_server.py): one worker per chunk, states handed along.

Keys (``k`` is the worker, chunk number ``k + offset``):

- input  ``<vid>/%08d.y4m`` (as png2y4m or ``excamera encode`` wrote them)
- output ``<vid>/out/%08d.ivf`` and ``<vid>/comp_txt/%08d.txt``

Per worker k, in order (each step is a named state for ``-O`` and the timeline):

1. ``connect`` to the relay as (job, k, k+1); ``retrieve`` the chunk.
2. Pass 0 (``pass0``): vpxenc with mu's settings at ``--cq-level=Y`` (or, with
   ``pass0="xc"``, ``xc-enc -y Y``), then ``xcdump``: ``xc-dump output.ivf final.state``.
   The chunk starts with a key frame, so it decodes on its own.
3. Passes p = 1.. (``wait_state_p<p>``, ``reencode_p<p>``): receive the predecessor's state,
   then rebase this chunk onto it with alfalfa's command line::

       xc-enc -r -I <pred. state of pass p-1> -p prev.ivf [-S <pred. state of pass p-2>]
              -w 0.75 [phase flags] -i y4m -O final.state -o output.ivf input.y4m

   ``-w W`` (mu's 0.75) puts the converted first frame at quantizer W*kf_q + (1-W)*next_q.
   vpxenc's two-pass key frames sit at quantizer 0, so with 0.75 the first frame lands 7-8 dB
   below the key frame it replaces: far fewer bits, and close to what a serial encoder spends on
   an ordinary inter frame. ``-w -1`` omits ``-w``: xc-enc then picks the coarsest quantizer
   within 0.25 dB of the key frame's quality, so every frame stays within 0.5 dB of the
   independently encoded chunks (crates/xc/tests/rebase.rs), at many more bits per chunk.

   ``prev.ivf`` is this worker's previous output, which was encoded against the ``-S`` state
   (none on pass 1: the pass-0 output starts with a key frame). After a pass whose state the
   successor needs, ``send_p<p>`` packs ``final.state`` as mu did, ``STATE(<tag>):`` plus the
   zlib-compressed state, and sends it to k+1 through the relay.
4. ``compare``: when the worker ran two passes or more, ``comp-states prev.state final.state``
   is appended to ``comp.txt`` (its own last two states; identical means the successor, which
   rebased onto the older one, decodes exactly). ``comp.txt`` is uploaded for every worker, empty
   when there was nothing to compare.
5. ``upload`` ``output.ivf`` and ``comp.txt``; quit.

Passes and phases (``-p``). mu's code takes ``w,x,y,z`` passes per phase (default 1,0,3,2):
phase 1 is pass 0 (vpxenc; w > 1 repeats it, pointlessly but as mu did), phase 2 plain rebases
(no extra flag), phase 3 the S phase (``--s-ac-qi S``), phase 4 refinement (``--refine-sw``, and
``--fix-prob-tables`` on the very last pass). The run right after the first S-phase pass adds
``--reencode-first-frame``. The guide's integer form ``-p N`` (default 7) is read as N passes in
all: pass 0, then an S phase of N-3 passes and the refinement's 2 (``1,0,N-3,2``); ``-p 3`` is
``1,0,1,1``, ``-p 2`` is ``1,0,1,0`` and ``-p 1`` is pass 0 alone: every chunk independent,
each starting with a key frame.

Wavefront (no ``-K``): worker k runs ``min(P, k+1)`` passes; its pass p rebases onto worker
k-1's pass p-1 state. Workers k <= P-1 therefore end on their predecessor's final state and are
exact. A worker k >= P ends on worker k-1's *second-to-last* state, so it is exact only if worker
k-1 converged (its last two passes gave identical states). That is checked as mu did, with
``comp-states``: a worker P-1 <= k < n-1 whose states differ fails the job, since its successor's
output would not decode to what was encoded. (The last worker has no successor to mislead.)

Batch mode (``-K x``, ExCamera[n,x]): chunk k is number ``k mod x`` of its batch. The first
chunk of each batch keeps its key frame (1 pass); the second rebases once onto the first's final
state (2 passes); every later one rebases once onto its predecessor's pass-0 state (pass 1, in
parallel) and then onto its predecessor's *final* state (pass 2, serially along the batch, with
``-S`` the pass-0 state that pass 1 used). Every chunk is then exact by construction and no
worker runs more than 3 passes. Both re-encodes are plain rebases, without phase flags. With
``--chain excamera`` (the default) they also keep references across chunk joins and let rebased
macroblocks choose among them, and the converted first frame gets the encoder's best effort;
``--chain mu`` runs them as mu did (see ``XcencParams.pass_flags``). Batch mode needs ``-p 1``
or at least 3 passes.

Tools (``--tools``): the xc command lines above run inside the worker's own interpreter by
default (the ``xcenc_tool`` operation), or as one new Python process each with ``--tools
subprocess``, as mu ran its binaries; the output is byte-identical. vpxenc is always a process.

Restartability (``--retries``): outputs go to deterministic keys. A receiver skips a state it
already has (a restarted predecessor sends its states again, byte-identical). Because a
restarted *receiver* cannot get back what the relay already delivered to its dead predecessor
attempt, every handed-off state is also stored under ``<vid>/handoff/`` when retries are on,
and a retry (attempt > 0) reads its states from there after the sender announced them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import shlex
import shutil
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..mu.machines import JobContext, RunResult, WorkerHandle
from ..mu.operations import OpContext, OperationRegistry

OPERATION_MODULE = __name__

# mu's pass-0 vpxenc settings, with --cq-level=<Y> appended (-q only silences progress output).
VPXENC_SETTINGS = [
    "--ivf", "-q", "--codec=vp8", "--good", "--cpu-used=0", "--end-usage=cq", "--min-q=0",
    "--max-q=63", "--buf-initial-sz=10000", "--buf-optimal-sz=20000", "--buf-sz=40000",
    "--undershoot-pct=100", "--passes=2", "--auto-alt-ref=1", "--threads=1", "--token-parts=0",
    "--tune=ssim", "--target-bitrate=4294967295",
]
STATE_MAGIC = b"STATE("
CHAINS = ("excamera", "mu")
TOOL_MODES = ("worker", "subprocess")
EXCAMERA_CHAIN_FLAGS = ["-q", "best", "--last-keeps-refs", "--choose-refs"]


class PlanError(ValueError):
    """Options that do not make a runnable plan (named in the message)."""


@dataclass(frozen=True)
class PassPlan:
    """Passes per phase (mu's ``w,x,y,z``); pass indices start at 0 (the vpxenc pass)."""

    phases: tuple[int, int, int, int] = (1, 0, 4, 2)

    @classmethod
    def parse(cls, text: str | int) -> PassPlan:
        s = str(text).replace(" ", "")
        try:
            parts = [int(v) for v in s.split(",")]
        except ValueError:
            raise PlanError(f"-p {text!r}: expected an integer or w,x,y,z") from None
        if len(parts) == 1:
            n = parts[0]
            if n < 1:
                raise PlanError(f"-p {n}: at least 1 pass (pass 0)")
            if n == 1:
                return cls((1, 0, 0, 0))
            if n == 2:
                return cls((1, 0, 1, 0))
            if n == 3:
                return cls((1, 0, 1, 1))
            return cls((1, 0, n - 3, 2))
        if len(parts) != 4:
            raise PlanError(f"-p {text!r}: expected an integer or four numbers w,x,y,z")
        if parts[0] < 1 or min(parts) < 0:
            raise PlanError(f"-p {text!r}: phase 1 (pass 0) needs at least 1 pass, none < 0")
        return cls((parts[0], parts[1], parts[2], parts[3]))

    @property
    def total(self) -> int:
        return sum(self.phases)

    def phase(self, p: int) -> int:
        """1..4: which phase pass ``p`` belongs to."""
        edge = 0
        for i, n in enumerate(self.phases):
            edge += n
            if p < edge:
                return i + 1
        raise PlanError(f"pass {p} is beyond the plan's {self.total} passes")

    def flags(self, p: int, s_ac_qi: int) -> list[str]:
        """The extra xc-enc flags of re-encode pass ``p`` (p >= 1 and not in phase 1)."""
        w, x, y, _ = self.phases
        phase = self.phase(p)
        out: list[str] = []
        if phase == 3:
            out += ["--s-ac-qi", str(s_ac_qi)]
        elif phase == 4:
            out.append("--refine-sw")
            if p == self.total - 1:
                out.append("--fix-prob-tables")
        if y >= 1 and p == w + x + 1:
            out.append("--reencode-first-frame")
        return out


@dataclass(frozen=True)
class Need:
    """What re-encode pass ``p`` needs from the predecessor: -I state tag and -S state tag."""

    inp: int
    prev: int | None


@dataclass(frozen=True)
class WorkerPlan:
    passes: int
    needs: dict[int, Need]  # pass -> states it rebases with
    out_tags: dict[int, int]  # pass -> tag its final.state carries when sent
    send_tags: frozenset[int]  # tags the successor needs
    enforce_convergence: bool


@dataclass(frozen=True)
class XcencParams:
    vid_name: str
    n_parts: int
    offset: int = 0
    plan: PassPlan = field(default_factory=PassPlan)
    s_ac_qi: int = 127
    y_ac_qi: int = 30
    # xc-enc -w (mu ran 0.75); None: xc-enc matches the prediction's key-frame quality.
    kf_weight: float | None = 0.75
    kf_dist: int | None = None
    pass0: str = "vpxenc"  # or "xc": xc-enc -y Y
    reencode: str = "xc-enc"  # "copy": test mode, exercise hand-off/compare, keep pass-0 stream
    handoff_storage: bool = False  # also store handed-off states (on with --retries)
    cpu_slots: int | None = None  # at most this many encodes at once (None: no limit)
    # How batch mode's re-encodes link chunks: "excamera" (the default) keeps references
    # across chunk joins and lets rebased macroblocks choose among them, and gives the
    # converted first frame the encoder's best effort; "mu" runs xc-enc as mu did. See
    # ``pass_flags``.
    chain: str = "excamera"
    # Where the xc tools (xc-enc, xc-dump, comp-states) run: "worker" in the worker's own
    # interpreter (an ``xcenc_tool`` operation, same command lines), or "subprocess", a new
    # Python per step as mu ran its binaries. A Python start-up costs about 0.2 s, which on
    # small chunks is more than the rebase itself and adds up along the serial pass.
    tools: str = "worker"

    def __post_init__(self) -> None:
        if self.n_parts < 1:
            raise PlanError("-n must be at least 1")
        if self.offset < 0:
            raise PlanError("-o must be >= 0")
        if self.kf_dist is not None:
            if self.kf_dist < 1:
                raise PlanError("-K must be at least 1")
            if self.plan.total == 2:
                raise PlanError("batch mode (-K) needs -p 1 or at least 3 passes")
        if self.pass0 not in ("vpxenc", "xc"):
            raise PlanError(f"pass 0 encoder {self.pass0!r}: expected vpxenc or xc")
        if self.tools not in TOOL_MODES:
            raise PlanError(f"tools {self.tools!r}: expected one of {', '.join(TOOL_MODES)}")
        if self.chain not in CHAINS:
            raise PlanError(f"chain {self.chain!r}: expected one of {', '.join(CHAINS)}")
        if self.reencode not in ("xc-enc", "copy"):
            raise PlanError(f"re-encode mode {self.reencode!r}: expected xc-enc or copy")
        if self.kf_weight is not None and not 0.0 <= self.kf_weight <= 1.0:
            raise PlanError(f"-w {self.kf_weight}: the key-frame weight must be in 0..1")
        if not 0 <= self.y_ac_qi <= 127 or not 0 <= self.s_ac_qi <= 127:
            raise PlanError("-Y and -S are quantizer indices 0..127")
        if self.pass0 == "vpxenc" and self.y_ac_qi > 63:
            raise PlanError(f"-Y {self.y_ac_qi}: vpxenc's --cq-level takes 0..63")

    def chunk(self, k: int) -> str:
        return f"{k + self.offset:08d}"

    def input_key(self, k: int) -> str:
        return f"{self.vid_name}/{self.chunk(k)}.y4m"

    def output_key(self, k: int) -> str:
        return f"{self.vid_name}/out/{self.chunk(k)}.ivf"

    def comp_key(self, k: int) -> str:
        return f"{self.vid_name}/comp_txt/{self.chunk(k)}.txt"

    def handoff_key(self, k: int, tag: int) -> str:
        return f"{self.vid_name}/handoff/{self.chunk(k)}.{tag}.state.z"

    def eff(self, k: int) -> int:
        return k % self.kf_dist if self.kf_dist is not None else k

    def _passes(self, k: int) -> int:
        total = self.plan.total
        if self.kf_dist is None:
            return min(total, k + 1)
        return 1 if total == 1 else min(3, self.eff(k) + 1)

    def _needs(self, k: int) -> dict[int, Need]:
        n = self._passes(k)
        w = self.plan.phases[0]
        if self.kf_dist is None:
            # pass p rebases onto pred's pass p-1; -S is pred's pass p-2 when prev.ivf was
            # itself a rebase (pass 0..w-1 outputs start with key frames).
            return {p: Need(p - 1, p - 2 if p - 1 >= w else None) for p in range(w, n)}
        e = self.eff(k)
        needs: dict[int, Need] = {}
        if n >= 2:
            needs[1] = Need(0, None)
        if n >= 3:
            needs[2] = Need(e - 1, 0)
        return needs

    def _out_tags(self, k: int) -> dict[int, int]:
        n = self._passes(k)
        if self.kf_dist is None:
            return {p: p for p in range(n)}
        e = self.eff(k)
        tags = {0: 0}
        if n >= 2:
            tags[n - 1] = e  # the final pass carries the chunk's position in its batch
        return tags

    def pass_flags(self, n: int) -> list[str]:
        """xc-enc's phase flags for re-encode pass ``n``.

        In batch mode both re-encodes are plain rebases: pass 2's output is the final stream and
        a rebase keeps the first frame's quantizer, so an S-phase first frame (``--s-ac-qi``,
        127 by default) would end up in the output at the coarsest quantizer. The wavefront keeps
        mu's phases.

        Batch mode's ``excamera`` chain adds ``EXCAMERA_CHAIN_FLAGS``:

        - ``-q best``: the converted first frame (pass 1, in parallel) is encoded at the
          encoder's best effort. At ``-w 0.75`` it is a boosted frame carrying a quarter of the
          chunk's bits, and realtime effort wasted them.
        - ``--last-keeps-refs``: a chunk's last frame no longer refreshes all three
          references, so the next chunk's first frame can still predict from this chunk's
          boosted first frame (golden and alt-ref), as a serial encoder's frames use a golden.
        - ``--choose-refs``: pass 2 rebases pass 1's decisions, made against the predecessor's
          pass-0 state, onto its final state, whose golden and alt-ref pictures differ; each
          macroblock may take whichever reference predicts it best with its own vectors.

        Measured on carphone (120 frames, ExCamera[6,16], cq 12..44, SSIM BD-rate against one
        vpxenc run): mu's chain +32.1%, these three +12.2% (+12.0% after the encoder's
        SPLITMV work); without ``--last-keeps-refs`` and ``--choose-refs`` (best effort alone)
        +32.9%; with realtime effort +21.7%.
        """
        weight = [] if self.kf_weight is None else ["-w", f"{self.kf_weight:g}"]
        if self.kf_dist is not None:
            return weight + (EXCAMERA_CHAIN_FLAGS if self.chain == "excamera" else [])
        return weight + self.plan.flags(n, self.s_ac_qi)

    def worker_plan(self, k: int) -> WorkerPlan:
        has_successor = k + 1 < self.n_parts and (
            self.kf_dist is None or self.eff(k + 1) != 0
        )
        send: set[int] = set()
        if has_successor:
            for need in self._needs(k + 1).values():
                send.add(need.inp)
                if need.prev is not None:
                    send.add(need.prev)
        passes = self._passes(k)
        return WorkerPlan(
            passes=passes,
            needs=self._needs(k),
            out_tags=self._out_tags(k),
            send_tags=frozenset(send),
            enforce_convergence=(self.kf_dist is None and passes >= 2 and has_successor
                                 and k >= self.plan.total - 1 and self.reencode == "xc-enc"),
        )


# ---------------------------------------------------------------------------------------------
# Worker operations (they run in the worker's own interpreter, on its own files)


def _probe_op(ctx: OpContext) -> dict[str, Any]:
    """Where the worker's tools are: its Python (for tools_main), xc-enc and vpxenc presence."""
    import sys

    from excamera.xc.tools_main import entry_point

    return {
        "python": sys.executable,
        "xc_enc": entry_point("xc-enc") is not None,
        "vpxenc": shutil.which("vpxenc") is not None,
    }


def _pack_state_op(ctx: OpContext, src: str, tag: int, out: str) -> dict[str, Any]:
    """``STATE(<tag>):`` + zlib(state), mu's hand-off message; returns the raw state's hash."""
    raw = ctx.path(src).read_bytes()
    ctx.path(out).write_bytes(STATE_MAGIC + str(int(tag)).encode() + b"):" + zlib.compress(raw))
    return {"sha256": hashlib.sha256(raw).hexdigest(), "bytes": len(raw)}


def _unpack_state_op(ctx: OpContext, blob: str, out_dir: str = ".") -> dict[str, Any]:
    """Check and unpack a hand-off message into ``in_<tag>.state``; returns tag and hash."""
    data = ctx.path(blob).read_bytes()
    head, sep, body = data.partition(b"):")
    if not sep or not head.startswith(STATE_MAGIC) or not head[len(STATE_MAGIC):].isdigit():
        raise ValueError(f"hand-off message does not start with STATE(<pass>): ({data[:16]!r})")
    tag = int(head[len(STATE_MAGIC):])
    try:
        raw = zlib.decompress(body)
    except zlib.error as exc:
        raise ValueError(f"hand-off state {tag} is not valid zlib data: {exc}") from None
    from excamera.xc.codec import State, StateError

    try:
        State.from_bytes(raw)
    except StateError as exc:
        raise ValueError(f"hand-off state {tag} is not a valid xc state: {exc}") from None
    target = ctx.path(out_dir) / f"in_{tag}.state"
    target.write_bytes(raw)
    return {"tag": tag, "sha256": hashlib.sha256(raw).hexdigest(), "file": target.name}


def _copy_op(ctx: OpContext, pairs: list[list[str]]) -> dict[str, Any]:
    for src, dst in pairs:
        shutil.copyfile(ctx.path(src), ctx.path(dst))
    return {}


def _tool_op(ctx: OpContext, argv: list[str], check: bool = True,
             append_stdout: str | None = None) -> dict[str, Any]:
    """Run an xc tool's command line in this worker's interpreter (``XcencParams.tools``);
    the fields are a ``run`` command's. ``append_stdout`` also appends what it printed to
    that file (comp-states' report to comp.txt)."""
    import time

    from excamera.xc.tools_main import run_in_process

    started = time.monotonic()
    res = run_in_process([str(a) for a in argv], ctx.workdir)
    if res.stderr:
        sys.stderr.write(res.stderr[-1024:])
    if append_stdout:
        with ctx.path(append_stdout).open("a") as f:
            f.write(res.stdout)
    if check and res.exit_code != 0:
        last = res.stderr.strip().splitlines()
        raise RuntimeError(f"{' '.join(argv)} exited with {res.exit_code}: "
                           f"{last[-1] if last else 'no stderr'}")
    return {"exit_code": res.exit_code, "stdout": res.stdout[-4096:],
            "stderr_tail": res.stderr[-4096:], "seconds": round(time.monotonic() - started, 6)}


def _touch_op(ctx: OpContext, path: str) -> dict[str, Any]:
    ctx.path(path).touch()
    return {}


def register_operations(registry: OperationRegistry) -> None:
    registry.register("xcenc_probe", _probe_op)
    registry.register("xcenc_pack_state", _pack_state_op)
    registry.register("xcenc_unpack_state", _unpack_state_op)
    registry.register("xcenc_copy", _copy_op)
    registry.register("xcenc_touch", _touch_op)
    registry.register("xcenc_tool", _tool_op)


# ---------------------------------------------------------------------------------------------
# The machine


class CpuSlots:
    """Bounds how many encodes run at once on one machine; created lazily in the job's loop.

    Only the compute commands hold a slot, never a wait for a state, so a bound cannot
    deadlock the wavefront.
    """

    def __init__(self, n: int | None) -> None:
        self.n = n
        self._sem: asyncio.Semaphore | None = None

    def get(self) -> asyncio.Semaphore | None:
        if self.n is None:
            return None
        if self._sem is None:
            self._sem = asyncio.Semaphore(self.n)
        return self._sem

    def held(self) -> contextlib.AbstractAsyncContextManager[Any]:
        """``async with slots.held():`` holds a slot (nothing to hold without a bound)."""
        sem = self.get()
        return sem if sem is not None else contextlib.nullcontext()


class NotConverged(Exception):
    """A worker's last two states differ where the wavefront needs them identical."""


def reencode_argv(tool: list[str], need: Need, flags: list[str]) -> list[str]:
    """alfalfa's re-encode command line as mu ran it; ``flags`` are ``-w`` and the phase flags
    (``XcencParams.pass_flags``)."""
    argv = [*tool, "-r", "-I", f"in_{need.inp}.state", "-p", "prev.ivf"]
    if need.prev is not None:
        argv += ["-S", f"in_{need.prev}.state"]
    argv += [*flags, "-i", "y4m", "-O", "final.state",
             "-o", "output.ivf", "input.y4m"]
    return argv


async def _compute(w: WorkerHandle, slots: CpuSlots, argv: list[str] | str,
                   check: bool = True) -> RunResult:
    """Run a command on the worker, holding a CPU slot."""
    async with slots.held():
        return await w.run(argv, check=check)


async def _tool(w: WorkerHandle, slots: CpuSlots, p: XcencParams, python: str,
                argv: list[str], check: bool = True, append_stdout: str | None = None
                ) -> RunResult:
    """Run ``TOOL ARGS...`` (xc-enc, xc-dump, comp-states) on the worker as ``p.tools`` says,
    holding a CPU slot."""
    if p.tools == "subprocess":
        cmd: list[str] | str = [python, "-m", "excamera.xc.tools_main", *argv]
        if append_stdout:
            line = " ".join(shlex.quote(a) for a in cmd)
            out = shlex.quote(append_stdout)
            cmd = f"{line} > tool.out; rc=$?; cat tool.out >> {out}; cat tool.out; exit $rc"
        return await _compute(w, slots, cmd, check=check)
    async with slots.held():
        f = await w.run_op("xcenc_tool", argv=argv, check=check, append_stdout=append_stdout)
    return RunResult(int(f["exit_code"]), str(f["stdout"]), str(f["stderr_tail"]),
                     float(f["seconds"]))


async def _receive(w: WorkerHandle, ctx: JobContext, p: XcencParams, have: dict[int, str],
                   tag: int) -> None:
    """Make ``in_<tag>.state`` present on the worker: from the relay, or on a retry from
    storage once the predecessor has announced it."""
    if tag in have:
        return
    if w.attempt > 0 and p.handoff_storage:
        await ctx.progress.wait_for(w.id - 1, f"sent_s{tag}")
        await w.retrieve(p.handoff_key(w.id - 1, tag), "handoff.blob")
        info = await w.run_op("xcenc_unpack_state", blob="handoff.blob")
        have[int(info["tag"])] = str(info["sha256"])
        return
    while tag not in have:
        await w.recv_blob("handoff.blob")
        info = await w.run_op("xcenc_unpack_state", blob="handoff.blob")
        # A restarted predecessor sends its states again: the same bytes, skipped here.
        have.setdefault(int(info["tag"]), str(info["sha256"]))


async def xcenc_machine(w: WorkerHandle, ctx: JobContext) -> dict[str, Any]:
    p: XcencParams = ctx.params["xcenc"]
    slots: CpuSlots = ctx.params["xcenc_slots"]
    plan = p.worker_plan(w.id)
    k = w.id

    w.state = "setup"
    probe = await w.run_op("xcenc_probe")
    py = str(probe["python"])
    needs_xcenc = (plan.passes > plan_w(p) and p.reencode == "xc-enc") or p.pass0 == "xc"
    if needs_xcenc and not probe["xc_enc"]:
        raise RuntimeError(
            f"worker {k}: xc-enc is not available (excamera.xc.enc is not built); "
            f"this plan needs it for {'pass 0' if p.pass0 == 'xc' else 're-encode passes'}"
            " (use -p 1 for pass 0 with vpxenc only)"
        )
    if p.pass0 == "vpxenc" and not probe["vpxenc"]:
        raise RuntimeError(f"worker {k}: vpxenc is not installed on the worker")
    needs_relay = bool(plan.needs) or bool(plan.send_tags)
    if needs_relay:
        await w.connect(k + 1)
    w.state = "retrieving"
    await w.retrieve(p.input_key(k), "input.y4m")

    have: dict[int, str] = {}  # received tag -> sha256
    sent: dict[int, str] = {}
    runs: list[dict[str, Any]] = []
    for n in range(plan.passes):
        if n > 0:
            await w.run_op("xcenc_copy", pairs=[["output.ivf", "prev.ivf"],
                                                ["final.state", "prev.state"]])
        if n not in plan.needs:  # phase 1: an independent encode
            w.state = "pass0" if n == 0 else f"pass0_p{n}"
            if p.pass0 == "vpxenc":
                res = await _compute(w, slots, ["vpxenc", *VPXENC_SETTINGS,
                                                f"--cq-level={p.y_ac_qi}", "-o", "output.ivf",
                                                "input.y4m"])
            else:
                res = await _tool(w, slots, p, py, ["xc-enc", "-y", str(p.y_ac_qi), "-i", "y4m",
                                                    "-O", "final.state", "-o", "output.ivf",
                                                    "input.y4m"])
            runs.append({"pass": n, "step": w.state, "seconds": res.seconds})
            # The decoder state is only needed to hand on or to rebase from (mu also skipped
            # xc-dump when every chunk stands alone).
            if plan.passes > 1 or plan.out_tags.get(n) in plan.send_tags:
                w.state = "xcdump" if n == 0 else f"xcdump_p{n}"
                res = await _tool(w, slots, p, py, ["xc-dump", "output.ivf", "final.state"])
                runs.append({"pass": n, "step": w.state, "seconds": res.seconds})
        else:
            need = plan.needs[n]
            w.state = f"wait_state_p{n}"
            for tag in (need.inp, need.prev):
                if tag is not None:
                    await _receive(w, ctx, p, have, tag)
            w.state = f"reencode_p{n}"
            if p.reencode == "xc-enc":
                res = await _tool(w, slots, p, py,
                                  reencode_argv(["xc-enc"], need, p.pass_flags(n)))
            else:  # test mode: the hand-off and comparison run, the stream stays pass 0's
                await w.run_op("xcenc_copy", pairs=[["prev.ivf", "output.ivf"]])
                res = await _tool(w, slots, p, py, ["xc-dump", "output.ivf", "final.state"])
            runs.append({"pass": n, "step": w.state, "seconds": res.seconds,
                         "input_state": have[need.inp],
                         "prev_state": have[need.prev] if need.prev is not None else None})
        tag = plan.out_tags.get(n)
        if tag is not None and tag in plan.send_tags:
            w.state = f"send_p{n}"
            info = await w.run_op("xcenc_pack_state", src="final.state", tag=tag,
                                  out="send.blob")
            if p.handoff_storage:
                await w.upload("send.blob", p.handoff_key(k, tag))
            await w.send_blob("send.blob")
            sent[tag] = str(info["sha256"])
            w.state = f"sent_s{tag}"

    await w.run_op("xcenc_touch", path="comp.txt")
    converged: bool | None = None
    comp = ""
    if plan.passes >= 2:
        w.state = "compare"
        # comp-states' report goes to comp.txt and back here; its exit code is the verdict.
        res = await _tool(w, slots, p, py, ["comp-states", "prev.state", "final.state"],
                          check=False, append_stdout="comp.txt")
        if res.exit_code not in (0, 1):
            raise RuntimeError(f"worker {k}: comp-states failed: {res.stderr_tail.strip()}")
        converged = res.exit_code == 0
        comp = res.stdout.strip()
        if plan.enforce_convergence and not converged:
            raise NotConverged(
                f"worker {k}: states did not converge after {plan.passes} passes "
                f"(comp-states: {comp.splitlines()[0] if comp else '?'} bits differ)"
            )
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
        "runs": runs,
    }


def plan_w(p: XcencParams) -> int:
    """Passes of phase 1 (the independent encodes)."""
    return p.plan.phases[0] if p.kf_dist is None else 1


def job_params(p: XcencParams) -> dict[str, Any]:
    """The Coordinator ``params`` for this job."""
    return {"xcenc": p, "xcenc_slots": CpuSlots(p.cpu_slots)}


def clean_handoff(p: XcencParams, storage_url: str) -> None:
    """Remove the ``<vid>/handoff/`` states of this job's chunks (they only serve retries)."""
    from ..mu.storage import open_storage

    async def go() -> None:
        st = open_storage(storage_url)
        chunks = {p.chunk(k) for k in range(p.n_parts)}
        for key in await st.list(f"{p.vid_name}/handoff/"):
            if Path(key).name.split(".")[0] in chunks:
                await st.delete(key)

    asyncio.run(go())
