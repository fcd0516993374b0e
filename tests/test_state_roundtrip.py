"""Decoder states survive the trip to another process, and damaged ones are refused.

ExCamera's workers hand states to each other: one decodes frames 0..k, serializes its state,
and a worker in another process (another machine, in production) carries on from frame k. The
carried-on output must be exactly that of one continuous decode, and the state's hash must mean
the same thing in every process. The tools built on states (``xc-dump``, ``comp-states``) are
tested through real subprocesses, as mu's workers run them.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from _shared_paths import shared_dir
from excamera.xc.codec import State, StateError, decode_frame
from excamera.xc.ivf import read_ivf

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"

pytestmark = pytest.mark.timeout(120)


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(PYTHON_DIR) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def vector(name: str) -> Path:
    return shared_dir() / "vp8-test-vectors" / name


def md5_file_lines(path: Path) -> list[str]:
    """The per-frame hashes libvpx recorded for a vector (hidden packets leave gaps)."""
    return [line.split()[0] for line in Path(f"{path}.md5").read_text().splitlines()]


def decode_all(path: Path, start: int = 0, state: State | None = None) -> tuple[State, list[str]]:
    state = state or State()
    digests = []
    for frame in read_ivf(path)[1][start:]:
        state, picture = decode_frame(state, frame.data)
        if picture is not None:
            digests.append(hashlib.md5(picture.to_bytes()).hexdigest())
    return state, digests


# The child: load the state, report its hash, decode the rest of the stream, report the frames'
# MD5s and the final state's hash. Only the state file links it to the parent.
CHILD = """
import hashlib, json, sys
from pathlib import Path
from excamera.xc.codec import State, decode_frame
from excamera.xc.ivf import read_ivf
state = State.from_bytes(Path(sys.argv[1]).read_bytes())
loaded = state.hash
digests = []
for frame in read_ivf(sys.argv[2])[1][int(sys.argv[3]):]:
    state, picture = decode_frame(state, frame.data)
    if picture is not None:
        digests.append(hashlib.md5(picture.to_bytes()).hexdigest())
print(json.dumps({"loaded": loaded, "digests": digests, "final": state.hash}))
"""

# Vectors with the awkward cases: a hidden key frame first (018), a hidden inter frame
# (sharpness-1439), key frames of two sizes (segmentation-1436), four token partitions
# (1405), version 1 with segmentation (007), and a long 16x16 stream.
ROUND_TRIPS = [
    ("vp80-00-comprehensive-018.ivf", [1, 2, 15, 28]),
    ("vp80-05-sharpness-1439.ivf", [1, 2, 8]),
    ("vp80-03-segmentation-1436.ivf", [1]),
    ("vp80-04-partitions-1405.ivf", [3, 10, 19]),
    ("vp80-00-comprehensive-007.ivf", [5, 20]),
    ("libvpx-test-data-extra/vp80-06-smallsize.ivf", [100, 359]),
]


@pytest.mark.parametrize(("name", "k"), [(n, k) for n, ks in ROUND_TRIPS for k in ks],
                         ids=[f"{n.split('/')[-1][:-4]}@{k}" for n, ks in ROUND_TRIPS for k in ks])
def test_resume_in_a_new_process_matches_continuous_decode(tmp_path: Path, name: str,
                                                           k: int) -> None:
    path = vector(name)
    frames = read_ivf(path)[1]
    final_state, continuous = decode_all(path)
    assert continuous == md5_file_lines(path), "the continuous decode itself must match libvpx"
    state = State()
    first = []
    for frame in frames[:k]:
        state, picture = decode_frame(state, frame.data)
        if picture is not None:
            first.append(hashlib.md5(picture.to_bytes()).hexdigest())
    blob = state.to_bytes()
    state_file = tmp_path / "handoff.state"
    state_file.write_bytes(blob)
    done = subprocess.run([sys.executable, "-c", CHILD, str(state_file), str(path), str(k)],
                          capture_output=True, text=True, timeout=60, env=child_env())
    assert done.returncode == 0, done.stderr
    child = json.loads(done.stdout)
    assert child["loaded"] == state.hash, "State.hash differs between processes"
    assert first + child["digests"] == continuous
    assert child["final"] == final_state.hash
    # The state was not silently changed by serializing it.
    assert State.from_bytes(blob) == state and State.from_bytes(blob).to_bytes() == blob


def test_hash_is_stable_across_processes_and_distinguishes_states() -> None:
    path = vector("vp80-00-comprehensive-001.ivf")
    hashes = []
    state = State()
    for frame in read_ivf(path)[1][:4]:
        state, _ = decode_frame(state, frame.data)
        hashes.append(state.hash)
    assert len(set(hashes)) == 4 and all(len(h) == 16 for h in hashes)
    code = ("import sys\nfrom excamera.xc.codec import State, decode_frame\n"
            "from excamera.xc.ivf import read_ivf\ns = State()\n"
            "for f in read_ivf(sys.argv[1])[1][:4]:\n    s, _ = decode_frame(s, f.data)\n"
            "    print(s.hash)\nprint(State().hash)")
    done = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True,
                          text=True, timeout=60, env=child_env(), check=True)
    assert done.stdout.split() == [*hashes, State().hash]


@pytest.fixture(scope="module")
def state_blob() -> bytes:
    path = vector("vp80-00-comprehensive-006.ivf")  # 175x143
    state = State()
    for frame in read_ivf(path)[1][:3]:
        state, _ = decode_frame(state, frame.data)
    return state.to_bytes()


def reseal(data: bytes | bytearray) -> bytes:
    """Recompute the format's trailing CRC-32 (zlib's, independent of xc's own) over the rest:
    damage that keeps the checksum valid reaches the field checks behind it."""
    body = bytes(data[:-4])
    return body + zlib.crc32(body).to_bytes(4, "little")


def test_state_ends_with_zlib_crc32_of_the_rest(state_blob: bytes) -> None:
    assert int.from_bytes(state_blob[-4:], "little") == zlib.crc32(state_blob[:-4])
    assert state_blob[4:6] == (2).to_bytes(2, "little")  # format version 2


@pytest.mark.parametrize("where", ["header", "probabilities", "segment map", "pixel", "checksum"])
def test_a_flipped_byte_is_refused_by_the_checksum(state_blob: bytes, where: str) -> None:
    map_len = int.from_bytes(state_blob[1130:1134], "little")
    offset = {"header": 12, "probabilities": 600, "segment map": 1134 + map_len // 2,
              "pixel": 1134 + map_len + 1 + 8 + 100, "checksum": len(state_blob) - 2}[where]
    data = bytearray(state_blob)
    data[offset] ^= 0x04
    with pytest.raises(StateError) as err:
        State.from_bytes(bytes(data))
    msg = str(err.value)
    assert "checksum mismatch" in msg and "\n" not in msg, msg
    assert State.from_bytes(state_blob).hash  # the undamaged one still loads


def test_version_1_states_are_refused_by_version(state_blob: bytes) -> None:
    # version 1 was this format without the checksum
    old = bytearray(state_blob[:-4])
    old[4:6] = (1).to_bytes(2, "little")
    with pytest.raises(StateError, match="unsupported version 1"):
        State.from_bytes(bytes(old))


@pytest.mark.parametrize("cut", [0, 1, 4, 6, 12, 500, 1130, 1134, -1000, -1])
def test_truncated_state_is_refused(state_blob: bytes, cut: int) -> None:
    data = state_blob[:cut]
    with pytest.raises(StateError) as err:
        State.from_bytes(data)
    msg = str(err.value)
    assert "\n" not in msg
    assert ("truncated" in msg) or ("magic" in msg and len(data) < 4), msg


@pytest.mark.parametrize(("offset", "value", "words"), [
    (0, b"Y", "magic"),
    (4, b"\x09", "version"),
    (6, b"\xff\x7f", "size"),  # width 32767: more than 14 bits
    (6, b"\xb0\x00", "frame is"),  # width 176 while the frames are 175 wide
    (10, b"\x07", "scaling"),
    (12, b"\xe0", "flag"),
    (1130, b"\x05", "segment map"),  # map length no longer matches the macroblock count
])
def test_corrupted_state_names_the_problem(state_blob: bytes, offset: int, value: bytes,
                                           words: str) -> None:
    data = bytearray(state_blob)
    data[offset : offset + len(value)] = value
    with pytest.raises(StateError, match=words):
        State.from_bytes(reseal(data) if offset >= 6 else bytes(data))


def test_trailing_bytes_and_bad_segment_ids_are_refused(state_blob: bytes) -> None:
    with pytest.raises(StateError, match="trailing"):
        State.from_bytes(reseal(state_blob[:-4] + b"\0" + state_blob[-4:]))
    data = bytearray(state_blob)
    data[1134] = 4  # the first segment id: only 0..3 exist
    with pytest.raises(StateError, match="segment id"):
        State.from_bytes(reseal(data))


def test_state_error_is_a_value_error_and_not_a_decode_error() -> None:
    from excamera.xc.codec import DecodeError

    assert issubclass(StateError, ValueError)
    with pytest.raises(StateError) as err:
        State.from_bytes(b"not a state at all")
    assert not isinstance(err.value, DecodeError)


# --- xc-dump and comp-states, run as the processes mu starts ---------------------------------

def tool(name: str, *args: str) -> subprocess.CompletedProcess[str]:
    code = f"import sys\nfrom excamera.xc.tools import {name}\nsys.exit({name}(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60, env=child_env())


def bit_difference(a: bytes, b: bytes) -> int:
    """Differing bits over the common length, plus every bit of the longer one's excess (the
    trailing checksum is not state: comp-states leaves it out)."""
    a, b = a[:-4], b[:-4]
    n = min(len(a), len(b))
    common = sum(bin(x ^ y).count("1") for x, y in zip(a[:n], b[:n], strict=True))
    return common + 8 * abs(len(a) - len(b))


@pytest.fixture(scope="module")
def dumped(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """States written by xc-dump: two of the same stream, one of a prefix, one of another size."""
    root = tmp_path_factory.mktemp("states")
    src = vector("vp80-00-comprehensive-001.ivf")
    prefix = root / "prefix.ivf"
    raw = src.read_bytes()
    # The IVF header plus the first five frames.
    pos = 32
    for _ in range(5):
        pos += 12 + int.from_bytes(raw[pos : pos + 4], "little")
    prefix.write_bytes(raw[:pos])
    out = {}
    for key, ivf in (("a", src), ("b", src), ("prefix", prefix),
                     ("other", vector("vp80-00-comprehensive-006.ivf"))):
        out[key] = root / f"{key}.state"
        done = tool("xc_dump_main", str(ivf), str(out[key]))
        assert done.returncode == 0 and done.stderr == "", done.stderr
    return out


def test_xc_dump_writes_the_final_state(dumped: dict[str, Path]) -> None:
    final, _ = decode_all(vector("vp80-00-comprehensive-001.ivf"))
    assert State.from_bytes(dumped["a"].read_bytes()).hash == final.hash
    assert dumped["a"].read_bytes() == final.to_bytes()


def test_comp_states_identical(dumped: dict[str, Path]) -> None:
    done = tool("comp_states_main", str(dumped["a"]), str(dumped["b"]))
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["0"]


@pytest.mark.parametrize("other", ["prefix", "other"])
def test_comp_states_different(dumped: dict[str, Path], other: str) -> None:
    a, b = dumped["a"].read_bytes(), dumped[other].read_bytes()
    done = tool("comp_states_main", str(dumped["a"]), str(dumped[other]))
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    assert int(lines[0]) == bit_difference(a, b) > 0
    if other == "prefix":  # same size: the pixel statistics line follows
        frac, mad = (float(v) for v in lines[1].split())
        assert 0 < frac <= 1 and mad > 0
    else:
        assert "not comparable" in lines[1]


def test_comp_states_counts_a_single_flipped_pixel_bit(dumped: dict[str, Path],
                                                       tmp_path: Path) -> None:
    data = bytearray(dumped["a"].read_bytes())
    # A byte inside the "last" reference's Y plane (after the segment map, the reference tag
    # and its width and height): still a valid state, one pixel off by 16.
    map_len = int.from_bytes(data[1130:1134], "little")
    data[1134 + map_len + 1 + 8 + 100] ^= 0x10
    flipped = tmp_path / "flipped.state"
    flipped.write_bytes(reseal(data))
    done = tool("comp_states_main", str(dumped["a"]), str(flipped))
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[0] == "1"


@pytest.mark.parametrize("kind", ["missing", "garbage", "truncated", "both-garbage"])
def test_comp_states_errors(dumped: dict[str, Path], tmp_path: Path, kind: str) -> None:
    bad = tmp_path / f"{kind}.state"
    if kind == "garbage" or kind == "both-garbage":
        bad.write_bytes(b"definitely not an xc state\n")
    elif kind == "truncated":
        bad.write_bytes(dumped["a"].read_bytes()[:-7])
    first = bad if kind == "both-garbage" else dumped["a"]
    done = tool("comp_states_main", str(first), str(bad))
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("comp-states: ") and str(bad) in lines[0]


def test_tools_run_in_process_match_the_processes(dumped: dict[str, Path], tmp_path: Path
                                                  ) -> None:
    """``tools_main.run_in_process`` (how xcenc workers run the tools by default): relative
    paths are taken from its ``cwd``, output and errors land in its result, not on this
    process's streams, and exit codes are the tools' own."""
    from excamera.xc.tools_main import run_in_process

    ivf = tmp_path / "in.ivf"
    ivf.write_bytes(vector("vp80-00-comprehensive-001.ivf").read_bytes())
    done = run_in_process(["xc-dump", "in.ivf", "mine.state"], tmp_path)
    assert (done.exit_code, done.stdout, done.stderr) == (0, "", "")
    assert (tmp_path / "mine.state").read_bytes() == dumped["a"].read_bytes()
    (tmp_path / "other.state").write_bytes(dumped["prefix"].read_bytes())
    same = run_in_process(["comp-states", "mine.state", str(dumped["b"])], tmp_path)
    assert (same.exit_code, same.stdout.split()) == (0, ["0"])
    diff = run_in_process(["comp-states", "mine.state", "other.state"], tmp_path)
    proc = tool("comp_states_main", str(dumped["a"]), str(dumped["prefix"]))
    assert (diff.exit_code, diff.stdout) == (1, proc.stdout)
    bad = run_in_process(["comp-states", "mine.state", "missing.state"], tmp_path)
    assert bad.exit_code == 2 and bad.stdout == ""
    assert bad.stderr.startswith("comp-states: ") and "missing.state" in bad.stderr
    usage = run_in_process(["xc-dump", "only-one-argument"], tmp_path)
    assert usage.exit_code == 2 and "bad arguments" in usage.stderr
    with pytest.raises(ValueError, match="unknown tool"):
        run_in_process(["rm", "-rf", "/"], tmp_path)
