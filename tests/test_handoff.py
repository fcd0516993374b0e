"""The hand-off message (``pipelines/xcenc/handoff.py``): every kind of decoder state survives
it byte for byte, its hash is checked, and a damaged, truncated, oversized or older-format
message is refused in one line without allocating more than the receiver's bound.

The envelope is also read here by the format's table, independently of the module
(``envelope``), so the module cannot drift from its documentation unnoticed.
"""

from __future__ import annotations

import asyncio
import hashlib
import struct
import tracemalloc
import zlib
from pathlib import Path

import pytest

from _shared_paths import shared_dir
from excamera.mu.operations import OpContext
from excamera.pipelines.xcenc import handoff
from excamera.pipelines.xcenc.ops import _recv_state_op, _send_state_op, _unpack_state_op
from excamera.pipelines.xcenc.plan import HANDOFF_CODECS, PlanError, XcencParams
from excamera.xc.codec import State, decode_frame
from excamera.xc.ivf import read_ivf

pytestmark = pytest.mark.timeout(120)

# Vectors whose states cover the format's cases: a hidden key frame first, hidden inter
# frames, key frames of two sizes with segmentation on, golden and alt-ref updates (shared
# references, tags 2 and 3, and distinct ones), version 1 streams.
VECTORS = ["vp80-00-comprehensive-018.ivf", "vp80-05-sharpness-1439.ivf",
           "vp80-03-segmentation-1436.ivf", "vp80-00-comprehensive-007.ivf",
           "vp80-02-inter-1418.ivf"]


def states_of(name: str) -> list[State]:
    """The state after every frame of a test vector."""
    state, out = State(), []
    for frame in read_ivf(shared_dir() / "vp8-test-vectors" / name)[1]:
        state, _ = decode_frame(state, frame.data)
        out.append(state)
    return out


@pytest.fixture(scope="module")
def every_state() -> list[bytes]:
    states = [State().to_bytes()]
    for name in VECTORS:
        states += [s.to_bytes() for s in states_of(name)]
    return states


def envelope(msg: bytes) -> tuple[int, int, int, bytes, bytes]:
    """Tag, codec, declared length, SHA-256 and body, read by the module docstring's table."""
    head, sep, rest = msg.partition(b"):")
    assert sep and head.startswith(b"STATE(")
    magic, version, codec, reserved, length = struct.unpack("<4sBBHQ", rest[:16])
    assert (magic, version, reserved) == (b"XCHO", 1, 0)
    return int(head[6:]), codec, length, rest[16:48], rest[48:]


def bound_of(raw: bytes) -> int:
    st = State.from_bytes(raw)
    return handoff.max_state_bytes(max(st.width, 16), max(st.height, 16))


def test_every_state_round_trips_through_every_codec(every_state: list[bytes]) -> None:
    refs_seen = set()
    for raw in every_state:
        refs_seen.add(len(raw))
        for codec in handoff.CODECS:
            msg = handoff.pack(raw, 7, codec)
            tag, code, length, digest, body = envelope(msg)
            assert (tag, code, length) == (7, handoff.CODECS[codec], len(raw))
            assert digest == hashlib.sha256(raw).digest()
            if codec == "none":
                assert body == raw  # the state as it is, nothing to undo
            else:
                assert zlib.decompress(body) == raw
            got_tag, got, sha = handoff.unpack(msg, bound_of(raw))
            assert (got_tag, bytes(got), sha) == (7, raw, hashlib.sha256(raw).hexdigest())
            assert State.from_bytes(bytes(got)) == State.from_bytes(raw)
            assert len(raw) <= bound_of(raw)
    assert len(every_state) > 100 and len(refs_seen) > 5  # many frames, several layouts


def test_the_bound_is_a_state_with_three_references_and_a_segment_map() -> None:
    # 1280x720: 80x45 macroblocks, three 1280x720 4:2:0 pictures.
    assert handoff.max_state_bytes(1280, 720) == 1138 + 3600 + 3 * (9 + 1280 * 720 * 3 // 2)
    # A picture that is not a multiple of 16 is stored at the macroblock-aligned size.
    assert handoff.max_state_bytes(17, 1) == handoff.max_state_bytes(32, 16)


@pytest.fixture(scope="module")
def a_state() -> bytes:
    """A state with two distinct references and segmentation (176x144)."""
    states = states_of("vp80-03-segmentation-1436.ivf")
    return max((s.to_bytes() for s in states), key=len)


def one_line_refusal(msg: bytes, bound: int, *words: str) -> str:
    with pytest.raises(handoff.HandoffError) as info:
        handoff.unpack(msg, bound)
    text = str(info.value)
    assert "\n" not in text and text.startswith(("hand-off state", "hand-off message"))
    for w in words:
        assert w in text
    return text


def test_truncated_messages_are_refused(a_state: bytes) -> None:
    bound = bound_of(a_state)
    for codec in handoff.CODECS:
        msg = handoff.pack(a_state, 3, codec)
        for cut in (0, 3, 8, 9, 20, 40, len(msg) - len(a_state) // 2, len(msg) - 1):
            one_line_refusal(msg[:cut], bound)


def test_a_changed_byte_is_refused_by_the_hash(a_state: bytes) -> None:
    bound = bound_of(a_state)
    msg = bytearray(handoff.pack(a_state, 3))
    msg[-1000] ^= 0x04  # a pixel of a reference picture: the state's own CRC is not consulted
    one_line_refusal(bytes(msg), bound, "SHA-256", "differs")
    msg = bytearray(handoff.pack(a_state, 3))
    msg[9 + 16] ^= 0x01  # the envelope's hash itself
    one_line_refusal(bytes(msg), bound, "SHA-256")


def test_an_oversized_state_is_refused_before_anything_is_allocated(a_state: bytes) -> None:
    bound = bound_of(a_state)
    tag = b"STATE(3):"
    huge = tag + struct.pack("<4sBBHQ32s", b"XCHO", 1, 1, 0, 1 << 40, bytes(32)) + b"x"
    one_line_refusal(huge, bound, "declares 1099511627776 bytes", str(bound))
    # A zlib bomb declaring a permitted length: inflation stops one byte past it.
    bomb = zlib.compress(bytes(64 << 20), 9)
    msg = tag + struct.pack("<4sBBHQ32s", b"XCHO", 1, 1, 0, bound, bytes(32)) + bomb
    tracemalloc.start()
    try:
        one_line_refusal(msg, bound, "exactly")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * bound + (1 << 20), peak  # not the bomb's 64 MiB
    # Data after the zlib stream, or a stream shorter than declared.
    good = handoff.pack(a_state, 3, "zlib")
    one_line_refusal(good + b"junk", bound, "exactly")
    head = good[:9 + handoff.HEAD.size]
    one_line_refusal(head + zlib.compress(a_state[:-1]), bound)


def test_the_older_zlib_format_and_unknown_envelopes_are_refused(a_state: bytes) -> None:
    bound = bound_of(a_state)
    old = b"STATE(2):" + zlib.compress(a_state)  # what excamera sent before this format
    text = one_line_refusal(old, bound, "hand-off state 2", "XCHO", "older")
    assert len(text) < 160
    msg = bytearray(handoff.pack(a_state, 2))
    msg[9 + 4] = 2  # version 2
    one_line_refusal(bytes(msg), bound, "version 2")
    msg[9 + 4], msg[9 + 5] = 1, 9  # codec 9
    one_line_refusal(bytes(msg), bound, "codec 9")
    one_line_refusal(b"STATE(x):" + bytes(100), bound, "STATE(<tag>)")
    one_line_refusal(b"XCST" + a_state, bound, "STATE(<tag>)")


def test_the_plan_knows_the_codecs_and_refuses_others() -> None:
    assert HANDOFF_CODECS is handoff.CODECS
    assert XcencParams("v", 2).handoff_codec == "none"
    with pytest.raises(PlanError, match="hand-off codec 'lz4': expected one of none, zlib"):
        XcencParams("v", 2, handoff_codec="lz4")


def write_y4m_header(path: Path, width: int, height: int) -> None:
    path.write_bytes(b"YUV4MPEG2 W%d H%d F30:1 Ip A1:1 C420jpeg\n" % (width, height))


class QueueLink:
    """Two operations' ``OpContext.peer`` joined by a queue, as a relay would join them (the
    jobs in test_xcenc_job run the real relay); it records the sender id each blob needs, and
    stamps each blob with the sending link's ``my_id`` as the relay does."""

    def __init__(self, my_id: int = 4) -> None:
        self.queue: asyncio.Queue[tuple[int, bytes]] = asyncio.Queue()
        self.expected: list[object] = []
        self.my_id = my_id

    async def send(self, data: bytes) -> None:
        await self.queue.put((self.my_id, bytes(data)))

    async def recv(self, expected: int | list[int]) -> bytes:
        return (await self.recv_from(expected))[1]

    async def recv_from(self, expected: int | list[int]) -> tuple[int, bytes]:
        self.expected.append(expected)
        return await self.queue.get()


@pytest.mark.parametrize("codec", list(HANDOFF_CODECS))
def test_the_operations_hand_a_state_over_and_bound_it_by_the_picture(
        tmp_path: Path, a_state: bytes, codec: str) -> None:
    link = QueueLink()
    sender, receiver = OpContext(tmp_path / "a", peer=link), OpContext(tmp_path / "b", peer=link)
    for ctx in (sender, receiver):
        ctx.workdir.mkdir()
    (sender.workdir / "final.state").write_bytes(a_state)
    st = State.from_bytes(a_state)
    write_y4m_header(receiver.workdir / "input.y4m", st.width, st.height)

    async def hand_over() -> tuple[dict, dict]:
        sent = await _send_state_op(sender, "final.state", 5, codec=codec, keep="send.blob")
        return sent, await _recv_state_op(receiver, [4, 9])

    sent, got = asyncio.run(hand_over())
    assert sent["sha256"] == hashlib.sha256(a_state).hexdigest() and sent["bytes"] == len(a_state)
    assert (got["tag"], got["sha256"], got["file"]) == (5, sent["sha256"], "in_5.state")
    assert link.expected == [[4, 9]]
    assert (receiver.workdir / "in_5.state").read_bytes() == a_state
    # The stored copy (for retries) is the same message, and unpacks from its file the same.
    (receiver.workdir / "in_5.state").unlink()
    blob = (sender.workdir / "send.blob").read_bytes()
    assert envelope(blob)[2:4] == (len(a_state), hashlib.sha256(a_state).digest())
    (receiver.workdir / "handoff.blob").write_bytes(blob)
    assert _unpack_state_op(receiver, "handoff.blob")["sha256"] == sent["sha256"]
    assert (receiver.workdir / "in_5.state").read_bytes() == a_state
    # A receiver whose chunk is smaller than the state's pictures refuses it, before reading
    # the file whole, and before unpacking what the relay delivered.
    write_y4m_header(receiver.workdir / "input.y4m", 32, 32)
    with pytest.raises(ValueError, match="more than a state of 32x32 can need") as info:
        _unpack_state_op(receiver, "handoff.blob")
    assert "\n" not in str(info.value)

    async def oversized() -> None:
        await link.send(blob)
        await _recv_state_op(receiver, 4)

    with pytest.raises(ValueError, match="more than a state of 32x32 can need"):
        asyncio.run(oversized())


def test_the_operations_need_the_relay(tmp_path: Path) -> None:
    ctx = OpContext(tmp_path)
    with pytest.raises(ValueError, match="not connected to the relay"):
        asyncio.run(_recv_state_op(ctx, 1))
    with pytest.raises(ValueError, match="not connected to the relay"):
        asyncio.run(_send_state_op(ctx, "final.state", 1))


def test_the_hop_bench_runs_the_jobs_hand_off_code(tmp_path: Path) -> None:
    """bench/hop.py on a small clip (make bench runs it at 1280x720): every hop is a real
    hand-off followed by a rebase, in that order, and the in-process figures describe the
    format (timings are the bench's; only order and sizes are checked)."""
    import json
    import os
    import subprocess
    import sys

    from _shared_paths import REPO

    out = tmp_path / "hop.json"
    env = dict(os.environ, PYTHONPATH=str(REPO / "python"))
    done = subprocess.run([sys.executable, str(REPO / "bench" / "hop.py"), "--clip",
                           "carphone_qcif_120f.y4m", "--hops", "2", "--runs", "1", "--json",
                           str(out), "--markdown", str(tmp_path / "hop.md")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads(out.read_text())
    # the shared directory, the relay, zlib through the relay (the bench refuses a hand-off
    # that went another way than its name says), in worker hosts as excamera encode runs them
    assert list(res["summary"]) == ["file", "relay", "zlib"]
    assert res["settings"]["worker_processes"] >= 1
    for codec, chains in res["runs"].items():
        assert len(chains) == 1 and len(chains[0]) == 2, codec
        for hop in chains[0]:
            # the hop contains the hand-off and then the whole rebase
            assert hop["hop_s"] > hop["rebase_wall_s"] >= hop["rebase_cpu_s"] > 0
            assert hop["hop_s"] > hop["pack_s"] + hop["transfer_s"] + hop["store_s"]
            assert min(hop["pack_s"], hop["transfer_s"], hop["store_s"]) > 0
            assert hop["handoff_cpu_s"] > 0
            assert hop["rebase_wait_cpu_s"] >= 0  # Linux says how long it waited for a core
    p = res["in_process"]
    assert p["size"] == "176x144"
    assert p["formats"]["none"]["bytes"] == p["state_bytes"] + len(b"STATE(2):") + 48
    assert p["formats"]["zlib"]["bytes"] < p["state_bytes"]
    assert (tmp_path / "hop.md").read_text().startswith("# Hop overhead at 176x144")


# --- one machine: the state through the workers' shared directory ----------------------------


def shared_pair(tmp_path: Path, a_state: bytes, sender_id: int = 4
                ) -> tuple[QueueLink, OpContext, OpContext]:
    """A sender and a receiver that share ``local_dir``, as the local backend's workers do."""
    link = QueueLink(sender_id)
    local = tmp_path / "local"
    local.mkdir(mode=0o700)
    sender = OpContext(tmp_path / "a", peer=link, local_dir=local)
    receiver = OpContext(tmp_path / "b", peer=link, local_dir=local)
    for ctx in (sender, receiver):
        ctx.workdir.mkdir()
    (sender.workdir / "final.state").write_bytes(a_state)
    st = State.from_bytes(a_state)
    write_y4m_header(receiver.workdir / "input.y4m", st.width, st.height)
    return link, sender, receiver


def test_on_one_machine_the_relay_carries_only_the_envelope(tmp_path: Path,
                                                            a_state: bytes) -> None:
    link, sender, receiver = shared_pair(tmp_path, a_state)

    async def hand_over() -> tuple[dict, bytes, list[str], dict]:
        sent = await _send_state_op(sender, "final.state", 5, keep="send.blob")
        msg = link.queue._queue[0][1]  # what the relay would carry
        files = sorted(p.name for p in sender.local_dir.iterdir())
        return sent, msg, files, await _recv_state_op(receiver, [4, 9])

    sent, msg, files, got = asyncio.run(hand_over())
    digest = hashlib.sha256(a_state).digest()
    assert sent["via"] == "file" and sent["sha256"] == digest.hex()
    # The message: the tag and the envelope, flag bit 0 set, the length and hash of the state.
    assert len(msg) == len(b"STATE(5):") + handoff.HEAD.size
    head = struct.unpack("<4sBBHQ32s", msg[len(b"STATE(5):"):])
    assert head == (b"XCHO", 1, 0, handoff.FLAG_FILE, len(a_state), digest)
    assert files == [f"4.5.{digest.hex()}.state"]  # the sender's relay id, the tag, the hash
    assert (got["tag"], got["sha256"]) == (5, sent["sha256"])
    assert (receiver.workdir / "in_5.state").read_bytes() == a_state
    assert not any(receiver.local_dir.iterdir())  # read once, then removed...
    # ...moved into the receiver's directory as its input (no copy, no part file left)
    assert sorted(p.name for p in receiver.workdir.iterdir()) == ["in_5.state", "input.y4m"]
    # The stored copy for retries holds the state itself: it unpacks without the directory.
    blob = (sender.workdir / "send.blob").read_bytes()
    assert envelope(blob)[1:] == (0, len(a_state), digest, a_state)
    assert handoff.unpack(blob, bound_of(a_state))[2] == digest.hex()
    # Asked not to (handoff_local=False), or compressing, the sender uses the relay.
    for kwargs in ({"local": False}, {"codec": "zlib"}):
        sent = asyncio.run(_send_state_op(sender, "final.state", 6, **kwargs))
        assert sent["via"] == "relay" and not any(sender.local_dir.iterdir())
        assert len(link.queue.get_nowait()[1]) > len(a_state) // 4


def refuse_shared(receiver: OpContext, link: QueueLink, msg: bytes, *words: str,
                  sender: int = 4) -> str:
    """The receive of ``msg`` (from relay id ``sender``) fails with one line naming it."""
    async def receive() -> None:
        await link.queue.put((sender, msg))
        await _recv_state_op(receiver, sender)

    with pytest.raises(handoff.HandoffError) as info:
        asyncio.run(receive())
    text = str(info.value)
    assert "\n" not in text and text.startswith("hand-off state")
    for w in words:
        assert w in text, text
    return text


def test_a_bad_shared_file_is_refused_in_one_line(tmp_path: Path, a_state: bytes) -> None:
    """Whatever is under the name (nothing, a changed byte, too few or too many bytes, a
    link, a FIFO), the receiver refuses it in one line, reads at most the declared length,
    never hangs, and writes no in_<tag>.state."""
    import os

    link, sender, receiver = shared_pair(tmp_path, a_state)
    local = sender.local_dir
    digest = hashlib.sha256(a_state).digest()
    name = local / handoff.shared_name(4, 5, digest)
    msg = handoff.pack_head(len(a_state), digest, 5, flags=handoff.FLAG_FILE)
    refuse_shared(receiver, link, msg, "worker 4", "missing")
    changed = bytearray(a_state)
    changed[-1000] ^= 0x04
    for content, words in ((bytes(changed), ("SHA-256", "differs")),
                           (a_state[:-1], (f"holds {len(a_state) - 1} bytes", str(len(a_state)))),
                           (a_state + b"x", (f"holds {len(a_state) + 1} bytes",))):
        name.write_bytes(content)
        refuse_shared(receiver, link, msg, *words)
        assert not name.exists()  # a bad file is not read twice either
    # A link to the real state elsewhere is not followed; a FIFO does not block the read.
    (tmp_path / "elsewhere").write_bytes(a_state)
    name.symlink_to(tmp_path / "elsewhere")
    refuse_shared(receiver, link, msg, "cannot be opened")
    assert not name.exists() and (tmp_path / "elsewhere").read_bytes() == a_state
    os.mkfifo(name)
    refuse_shared(receiver, link, msg, "not a regular file")
    assert not name.exists()
    # The name follows the relay's stamp, not the message: a file another sender left is not
    # what a message from worker 9 points at.
    name.write_bytes(a_state)
    refuse_shared(receiver, link, msg, "worker 9", "missing", sender=9)
    assert name.exists()
    # nothing of the refused files is left in the receiver's directory either
    assert sorted(p.name for p in receiver.workdir.iterdir()) == ["input.y4m"]


def test_a_shared_file_hand_off_is_bounded_before_any_file_is_opened(
        tmp_path: Path, a_state: bytes) -> None:
    link, sender, receiver = shared_pair(tmp_path, a_state)
    digest = hashlib.sha256(a_state).digest()
    bound = bound_of(a_state)
    name = sender.local_dir / handoff.shared_name(4, 5, digest)
    name.write_bytes(a_state)
    # A declared length past the receiver's bound: refused, and the file left unread.
    refuse_shared(receiver, link, handoff.pack_head(bound + 1, digest, 5,
                                                    flags=handoff.FLAG_FILE),
                  f"declares {bound + 1} bytes")
    assert name.exists()
    # A shared-file message with a state after its envelope, or compressed, or with another
    # flag bit, is not one.
    flagged = handoff.pack_head(len(a_state), digest, 5, flags=handoff.FLAG_FILE)
    refuse_shared(receiver, link, flagged + a_state, "nothing after its envelope")
    refuse_shared(receiver, link, handoff.pack_head(len(a_state), digest, 5, "zlib",
                                                    handoff.FLAG_FILE), "codec 1")
    refuse_shared(receiver, link, handoff.pack_head(len(a_state), digest, 5, flags=2),
                  "flags 2")
    # A receiver that is not on the sender's machine (no shared directory) says so.
    receiver.local_dir = None
    refuse_shared(receiver, link, flagged, "no shared hand-off directory")
    # ...and a stored copy is never a shared-file message.
    (receiver.workdir / "handoff.blob").write_bytes(flagged)
    receiver.local_dir = sender.local_dir
    with pytest.raises(handoff.HandoffError, match="no shared hand-off directory"):
        _unpack_state_op(receiver, "handoff.blob")
    assert name.exists() and not (receiver.workdir / "in_5.state").exists()
