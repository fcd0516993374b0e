"""The xcenc job's worker-side operations. A worker imports only this module (it is the job's
``OPERATION_MODULE``), so it imports nothing of the coordinator's side."""

from __future__ import annotations

import asyncio
import hashlib
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ...mu.operations import OpContext, OperationRegistry

OPERATION_MODULE = __name__

# What the decoder's Y4M record of a shown frame starts with, before its I420 bytes.
Y4M_FRAME = b"FRAME\n"


def _probe_op(ctx: OpContext) -> dict[str, Any]:
    """The worker's Python (it runs tools_main) and whether it has vpxenc."""
    return {"python": sys.executable, "vpxenc": shutil.which("vpxenc") is not None}


def _thread_cpu() -> float:
    """CPU seconds of the calling thread: an operation runs in a thread of its own, so this is
    the operation's, whatever else the worker (or its host's other workers) does meanwhile.
    (The thread's CPU clock, not getrusage, whose per-thread times move in scheduler ticks.)"""
    return time.thread_time()


def _run_queue_wait() -> float | None:
    """Seconds the calling thread has spent runnable but waiting for a core (Linux's
    schedstat), or None where the kernel does not say: of an operation's wall time beyond
    its CPU time, what other load took rather than what the operation waited for."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def _packed(ctx: OpContext, src: str, tag: int, codec: str,
            shared_as: int | None) -> tuple[bytes, bytes, str, float]:
    """The hand-off message of state file ``src``, the state, its hash and the CPU time this
    took. ``shared_as``: the state goes to ``ctx.local_dir`` for relay id ``shared_as`` and
    the message is the envelope alone."""
    from .handoff import FLAG_FILE, pack_hashed, pack_head, write_shared

    cpu0 = _thread_cpu()
    raw = ctx.path(src).read_bytes()
    if shared_as is None:
        msg, sha = pack_hashed(raw, tag, codec)
    else:
        assert ctx.local_dir is not None
        digest = hashlib.sha256(raw).digest()
        write_shared(ctx.local_dir, shared_as, tag, raw, digest)
        msg, sha = pack_head(len(raw), digest, tag, "none", FLAG_FILE), digest.hex()
    return msg, raw, sha, _thread_cpu() - cpu0


def _keep_message(ctx: OpContext, keep: str, msg: bytes, raw: bytes, tag: int, sha: str,
                  shared: bool) -> None:
    """The stored copy of a hand-off (for retries) holds the state itself, whichever way it
    travelled."""
    from .handoff import pack_head

    ctx.path(keep).write_bytes(
        b"".join((pack_head(len(raw), bytes.fromhex(sha), tag), raw)) if shared else msg)


async def _send_state_op(ctx: OpContext, src: str, tag: int, codec: str = "none",
                         keep: str | None = None, local: bool = True) -> dict[str, Any]:
    """Pack state file ``src`` and send it to the peer in one command: no round trip to the
    coordinator between the two. With ``local``, on one machine (``ctx.local_dir``) and
    uncompressed, the state goes through a file in that directory and the relay carries only
    its envelope. ``keep`` also writes the whole message to that file (the stored copy for
    retries). Returns the state's hash and size, how it went (``via``: relay or file), and
    when (monotonic clock) the message was packed and handed to the relay connection."""
    if ctx.peer is None:
        raise ValueError("not connected to the relay (send connect first)")
    shared_as = ctx.peer.my_id if local and codec == "none" and ctx.local_dir else None
    t0, cpu0 = time.monotonic(), time.process_time()
    msg, raw, sha, cpu = await asyncio.to_thread(_packed, ctx, src, tag, codec, shared_as)
    t1 = time.monotonic()
    await ctx.peer.send(msg)
    t2, cpu2 = time.monotonic(), time.process_time()
    if keep:
        await asyncio.to_thread(_keep_message, ctx, keep, msg, raw, tag, sha,
                                shared_as is not None)
    return {"sha256": sha, "bytes": len(raw), "via": "relay" if shared_as is None else "file",
            "t_start": t0, "t_packed": t1, "t_sent": t2,
            "pack_cpu_seconds": round(cpu, 6), "process_cpu_seconds": round(cpu2 - cpu0, 6)}


def _store_state(ctx: OpContext, data: bytes, bound: int, out_dir: str,
                 sender: int | None = None) -> dict[str, Any]:
    """Check hand-off message ``data`` (a state of at most ``bound`` bytes) and write its state
    to ``in_<tag>.state``. ``sender``: the relay id it came from, whose file in
    ``ctx.local_dir`` holds the state of a shared-file hand-off (None: a stored message,
    which holds its state)."""
    from .handoff import read_shared, unpack

    cpu0 = _thread_cpu()
    local = ctx.local_dir
    taken: list[Path] = []  # the shared file, moved into this worker's directory

    def fetch(tag: int, length: int, digest: bytes) -> bytearray:
        assert local is not None and sender is not None
        part = ctx.path(out_dir) / f".in_{tag}.state.part"
        raw = read_shared(local, sender, tag, length, digest, take_to=part)
        if part.exists():
            taken.append(part)
        return raw

    try:
        tag, raw, sha = unpack(data, bound, fetch if local and sender is not None else None)
        target = ctx.path(out_dir) / f"in_{tag}.state"
        if taken:  # the checked file itself becomes the input: no copy of the state
            os.replace(taken.pop(), target)
        else:
            target.write_bytes(raw)
    finally:
        for part in taken:  # refused by its hash
            part.unlink(missing_ok=True)
    return {"tag": tag, "sha256": sha, "file": target.name,
            "store_cpu_seconds": round(_thread_cpu() - cpu0, 6)}


def _state_bound(ctx: OpContext, picture: str) -> tuple[int, str]:
    """The largest state of ``picture``'s size (a Y4M: the worker's own chunk, which a state
    it rebases onto must match anyway) and that size as text."""
    from excamera.xc.y4m import Y4MReader

    from .handoff import max_state_bytes

    with Y4MReader(ctx.path(picture)) as pic:
        return max_state_bytes(pic.width, pic.height), f"{pic.width}x{pic.height}"


def _message_bound(state_bound: int) -> int:
    """The longest message of a state of at most ``state_bound`` bytes: zlib's worst case adds
    under 0.1%, then the envelope and the tag."""
    return state_bound + state_bound // 1000 + 1024


def _check_message_size(size: int, state_bound: int, size_text: str) -> None:
    """Refuse a hand-off message longer than a state of at most ``state_bound`` bytes (a
    ``size_text`` picture) can need, before anything else is done with it."""
    if size > _message_bound(state_bound):
        raise ValueError(f"hand-off message of {size} bytes, more than a state of "
                         f"{size_text} can need")


def _message_bound_op(ctx: OpContext, picture: str = "input.y4m") -> dict[str, Any]:
    """The longest hand-off message a worker with this picture size can need (for the relay
    connection's bound)."""
    return {"bytes": _message_bound(_state_bound(ctx, picture)[0])}


def _unpack_state_op(ctx: OpContext, blob: str, picture: str = "input.y4m",
                     out_dir: str = ".") -> dict[str, Any]:
    """Check a hand-off message in file ``blob`` and write its state to ``in_<tag>.state``;
    returns tag and hash. The file's size is bounded before it is read."""
    bound, size_text = _state_bound(ctx, picture)
    with ctx.path(blob).open("rb") as f:
        _check_message_size(f.seek(0, 2), bound, size_text)
        f.seek(0)
        data = f.read()
    return _store_state(ctx, data, bound, out_dir)


async def _recv_state_op(ctx: OpContext, sender: int | list[int], picture: str = "input.y4m",
                         out_dir: str = ".") -> dict[str, Any]:
    """Receive the next hand-off message from worker ``sender`` (or one of its instances) and
    store its state as ``_unpack_state_op`` does, in one command: no round trip to the
    coordinator in between. The message arrives whole, as ``recv_blob``'s does; its size is
    checked against the picture's before anything else is done with it. A shared-file
    hand-off's state is read from the file its certified sender's id names in
    ``ctx.local_dir`` (``handoff.read_shared``), never from a path in the message."""
    if ctx.peer is None:
        raise ValueError("not connected to the relay (send connect first)")
    cpu0 = time.process_time()  # waiting costs none: this is the receiving and the storing
    came_from, data = await ctx.peer.recv_from(sender)
    t_arrived = time.monotonic()
    bound, size_text = _state_bound(ctx, picture)
    _check_message_size(len(data), bound, size_text)
    info = await asyncio.to_thread(_store_state, ctx, data, bound, out_dir, came_from)
    return {**info, "t_arrived": t_arrived, "t_stored": time.monotonic(),
            "process_cpu_seconds": round(time.process_time() - cpu0, 6)}


def _copy_op(ctx: OpContext, pairs: list[list[str]]) -> dict[str, Any]:
    for src, dst in pairs:
        shutil.copyfile(ctx.path(src), ctx.path(dst))
    return {}


def _tool_op(ctx: OpContext, argv: list[str], check: bool = True,
             append_stdout: str | None = None) -> dict[str, Any]:
    """Run an xc tool's command line in this worker's interpreter (``XcencParams.tools``);
    the fields are a ``run`` command's, ``cpu_s``, the CPU time of the thread that ran it
    (the tool's own, even in a worker host beside other workers), and ``wait_cpu_s``, how
    long that thread waited for a core meanwhile (None where unknown). ``append_stdout``
    also appends what it printed to that file (comp-states' report to comp.txt)."""
    from excamera.xc.tools_main import run_in_process

    # the three clocks read back to back, so that a preemption between them is small
    started, queued0, cpu0 = time.monotonic(), _run_queue_wait(), time.thread_time()
    res = run_in_process([str(a) for a in argv], ctx.workdir)
    cpu, queued1, ended = time.thread_time() - cpu0, _run_queue_wait(), time.monotonic()
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
            "stderr_tail": res.stderr[-4096:], "seconds": round(ended - started, 6),
            "cpu_s": round(cpu, 6), "t_end": ended,
            "wait_cpu_s": None if queued0 is None or queued1 is None
            else round(queued1 - queued0, 6)}


def _fresh_state_op(ctx: OpContext, out: str) -> dict[str, Any]:
    """A decoder state before any frame (what a key frame decodes from)."""
    from excamera.xc.codec import State

    ctx.path(out).write_bytes(State().to_bytes())
    return {}


def _touch_op(ctx: OpContext, path: str) -> dict[str, Any]:
    ctx.path(path).touch()
    return {}


def _digest_op(ctx: OpContext, path: str) -> dict[str, Any]:
    """The sha256 of ``path`` (None when there is no such file)."""
    target = ctx.path(path)
    if not target.exists():
        return {"sha256": None}
    return {"sha256": hashlib.sha256(target.read_bytes()).hexdigest()}


def _measure_op(ctx: OpContext, ivf: str, source: str, entry: str | None) -> dict[str, Any]:
    """Decode this chunk's output from the state it was encoded against (``entry``; None: a
    fresh state, for a chunk that starts with a key frame) and compare each shown picture with
    the chunk's source: ``QualityMeter``'s sums, which the coordinator adds up, and the hashes
    of the states the decode starts and ends on, by which it checks the joins. Pictures stay
    I420 bytes from the decoder and the file to the extension's sums: no numpy. ``cpu_s`` and
    ``seconds``: the CPU time of the thread that measured, and the wall time."""
    import time

    from excamera.metrics import QualityMeter
    from excamera.xc.codec import Decoder, State
    from excamera.xc.ivf import IvfReader
    from excamera.xc.y4m import Y4MReader

    started, cpu0 = time.monotonic(), time.thread_time()
    state = State() if entry is None else State.from_bytes(ctx.path(entry).read_bytes())
    dec = Decoder(state)
    entry_hash = hashlib.sha256(dec.state.to_bytes()).hexdigest()
    meter = QualityMeter()
    with IvfReader(ctx.path(ivf)) as frames, Y4MReader(ctx.path(source)) as src:
        for f in frames:
            shown = dec.decode_y4m(f.data)
            if shown is None:
                continue
            width, height, record = shown
            ref = src.read_frame_bytes()
            if ref is None:
                raise ValueError(f"{ivf} shows more frames than its source's {meter.frames}")
            if (width, height) != (src.width, src.height):
                raise ValueError(f"{ivf}: frame {meter.frames} is {width}x{height}, its "
                                 f"source {src.width}x{src.height}")
            assert record is not None
            meter.add_i420(ref, memoryview(record)[len(Y4M_FRAME):], width, height)
        if src.read_frame_bytes() is not None:
            raise ValueError(f"{ivf} shows {meter.frames} frames, its source has more")
    return {"frames": meter.frames, "sse": meter.sse, "samples": meter.samples,
            "ssim_sum": meter.ssim_sum, "ssim_frames": meter.ssim_frames,
            "entry_state": entry_hash, "starts_fresh": entry is None,
            "exit_state": hashlib.sha256(dec.state.to_bytes()).hexdigest(),
            "cpu_s": round(time.thread_time() - cpu0, 6),
            "seconds": round(time.monotonic() - started, 6)}


def register_operations(registry: OperationRegistry) -> None:
    registry.register("xcenc_probe", _probe_op)
    registry.register("xcenc_unpack_state", _unpack_state_op)
    registry.register("xcenc_send_state", _send_state_op)
    registry.register("xcenc_recv_state", _recv_state_op)
    registry.register("xcenc_message_bound", _message_bound_op)
    registry.register("xcenc_copy", _copy_op)
    registry.register("xcenc_touch", _touch_op)
    registry.register("xcenc_fresh_state", _fresh_state_op)
    registry.register("xcenc_digest", _digest_op)
    registry.register("xcenc_tool", _tool_op)
    registry.register("xcenc_measure", _measure_op)
