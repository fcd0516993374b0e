"""``excamera encode`` keeps the input's audio: copied (Opus, Vorbis) or transcoded to Opus
(anything else), in sync with the video; ``--no-audio`` / ``audio=False`` drops it; an IVF
output says it dropped it. Everything is measured with ffprobe and ffmpeg, not with excamera.

The inputs are made here with ffmpeg from a shared clip (the shared mp4 has no audio): its
first 12 frames (176x144 at 30000/1001 fps, 0.4004 s) with a 440 Hz sine from lavfi. Each
encode is 2 chunks of 6 frames, pass 0 only, on 2 workers: about a second.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import excamera
from _shared_paths import shared_dir
from excamera.errors import SettingsError
from test_encode_cmd import child_env, encode

FRAMES = 12
FPS = Fraction(30000, 1001)
FRAME = float(1 / FPS)  # the sync tolerance: one frame
VIDEO_END = float(FRAMES / FPS)
TONE = 440
# No straggler duplicates: on a loaded machine one slow upload launches one, and its warning
# would join the stderr lines these tests read whole.
FAST = ("--workers", "2", "--passes", "1", "--chunk", "6", "--straggler-k", "0")


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", *args], check=True, timeout=120)


def sine(seconds: float, rate: int = 44100) -> list[str]:
    return ["-f", "lavfi", "-i", f"sine=frequency={TONE}:sample_rate={rate}:duration={seconds}"]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> dict[str, Path]:
    """``aac``: mp4, H.264 + AAC, both 0.4 s. ``late``: the same with the audio 0.1 s late
    (as muxed: ffmpeg's AAC priming moves it). ``opus`` and ``vorbis``: Matroska, H.264 + 0.6 s
    of Opus or Vorbis, longer than the video, so that the copy must be cut at its end; ``early``:
0.9 s of Opus that starts 0.3 s before the video, cut at both ends. ``pcm``:
    0.6 s of packed 16-bit stereo, the right channel at half the left's level."""
    d = tmp_path_factory.mktemp("audio-inputs")
    video = d / "video.mp4"
    ffmpeg("-i", str(shared_dir() / "clips" / "carphone_qcif_120f.mp4"), "-frames:v",
           str(FRAMES), "-an", "-c:v", "libx264", str(video))
    made = {"aac": d / "aac.mp4", "late": d / "late.mp4", "opus": d / "opus.mkv",
            "vorbis": d / "vorbis.mkv", "pcm": d / "pcm.mkv", "early": d / "early.mkv"}
    ffmpeg("-i", str(video), *sine(0.4004), "-c:v", "copy", "-c:a", "aac", str(made["aac"]))
    ffmpeg("-i", str(video), "-itsoffset", "0.1", *sine(0.4), "-map", "0:v", "-map", "1:a",
           "-c:v", "copy", "-c:a", "aac", str(made["late"]))
    ffmpeg("-i", str(video), *sine(0.6, 48000), "-c:v", "copy", "-c:a", "libopus",
           str(made["opus"]))
    ffmpeg("-i", str(video), *sine(0.6), "-c:v", "copy", "-c:a", "libvorbis",
           str(made["vorbis"]))
    ffmpeg("-itsoffset", "0.3", "-i", str(video), *sine(0.9, 48000), "-map", "0:v", "-map",
           "1:a", "-c:v", "copy", "-c:a", "libopus", str(made["early"]))
    ffmpeg("-i", str(video), *sine(0.6), "-filter_complex", "[1:a]pan=stereo|c0=c0|c1=0.5*c0[a]",
           "-map", "0:v", "-map", "[a]", "-c:v", "copy", "-c:a", "pcm_s16le", str(made["pcm"]))
    return made


@pytest.fixture(scope="module")
def aac_webm(inputs, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    out = tmp_path_factory.mktemp("aac-webm") / "out.webm"
    done = encode(str(inputs["aac"]), "-o", str(out), *FAST)
    assert done.returncode == 0, done.stderr
    return out, done


def probe(path: Path, section: str, *args: str) -> list[dict]:
    """ffprobe's ``section`` ("streams", "packets", "frames") of ``path``, as JSON."""
    out = subprocess.run(["ffprobe", "-v", "error", *args, "-of", "json", str(path)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    return json.loads(out)[section]


def codecs(path: Path) -> list[tuple[str, str]]:
    """(type, codec) of every stream, in order."""
    return [(s["codec_type"], s["codec_name"])
            for s in probe(path, "streams", "-show_entries", "stream=codec_type,codec_name")]


def video_span(path: Path) -> tuple[float, float]:
    """First timestamp and end (last timestamp + duration) of the video packets."""
    rows = probe(path, "packets", "-select_streams", "v", "-show_entries",
                 "packet=pts_time,duration_time")
    return float(rows[0]["pts_time"]), max(float(p["pts_time"]) + float(p["duration_time"])
                                           for p in rows)


def audio_span(path: Path) -> tuple[float, float]:
    """Start and end of the audio as ffprobe decodes it (decoder delay and padding removed):
    the first frame's timestamp, the last one's plus its samples."""
    rows = probe(path, "frames", "-select_streams", "a", "-show_entries",
                 "frame=pts_time,nb_samples")
    rate = int(probe(path, "streams", "-select_streams", "a", "-show_entries",
                     "stream=sample_rate")[0]["sample_rate"])
    return (float(rows[0]["pts_time"]),
            float(rows[-1]["pts_time"]) + int(rows[-1]["nb_samples"]) / rate)


def audio_packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def decoded_pcm(path: Path, channels: int) -> bytes:
    """The output's audio as ffmpeg decodes it: 48 kHz float samples, interleaved."""
    return subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a", "-f",
                           "f32le", "-ac", str(channels), "-ar", "48000", "-"],
                          capture_output=True, check=True, timeout=60).stdout


def test_mp4_to_webm_transcodes_the_audio_to_opus_in_sync(inputs, aac_webm) -> None:
    out, done = aac_webm
    assert "audio     aac, 1 ch, 44100 Hz: transcoded to Opus (1 ch, 48000 Hz" in done.stdout
    assert codecs(out) == [("video", "vp8"), ("audio", "opus")]
    v0, v1 = video_span(out)
    a0, a1 = audio_span(out)
    assert v0 == 0 and v1 == pytest.approx(VIDEO_END, abs=0.001)
    assert a0 == pytest.approx(v0, abs=FRAME) and a1 == pytest.approx(v1, abs=FRAME)
    # As close as the input's own streams are to each other (Matroska counts milliseconds).
    i0, i1 = audio_span(inputs["aac"])
    assert a0 == pytest.approx(i0, abs=0.002) and a1 == pytest.approx(min(i1, v1), abs=0.002)

    # It is the input's tone, at the input's level: lavfi's sine has amplitude 1/8.
    x = np.frombuffer(decoded_pcm(out, 1), np.float32)
    assert len(x) == pytest.approx(0.4004 * 48000, abs=48)
    spectrum = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    assert np.argmax(spectrum) * 48000 / len(x) == pytest.approx(TONE, abs=5)
    mid = x[len(x) // 4: 3 * len(x) // 4]
    assert np.sqrt(np.mean(mid**2)) == pytest.approx(0.125 / np.sqrt(2), rel=0.1)


def test_webm_with_audio_is_deterministic(inputs, aac_webm, tmp_path: Path) -> None:
    """The same input gives the same bytes (bit-exact muxing, the same Opus encode)."""
    again = tmp_path / "again.webm"
    done = encode(str(inputs["aac"]), "-o", str(again), *FAST)
    assert done.returncode == 0, done.stderr
    assert again.read_bytes() == aac_webm[0].read_bytes()


def test_late_audio_keeps_its_place(inputs, tmp_path: Path) -> None:
    """Audio that starts after the video starts as late in the output, and ends with it."""
    out = tmp_path / "late.webm"
    done = encode(str(inputs["late"]), "-o", str(out), *FAST)
    assert done.returncode == 0, done.stderr
    i0, _ = audio_span(inputs["late"])
    assert i0 > 0.05  # the input really is late
    a0, a1 = audio_span(out)
    assert a0 == pytest.approx(i0, abs=0.002)
    assert a1 == pytest.approx(video_span(out)[1], abs=FRAME)


def test_packed_stereo_is_cut_to_the_sample_and_keeps_its_channels(inputs,
                                                                    tmp_path: Path) -> None:
    """PCM (packed samples) transcoded: stereo Opus, exactly the video's length, each
    channel at its own level."""
    out = tmp_path / "pcm.webm"
    done = encode(str(inputs["pcm"]), "-o", str(out), *FAST)
    assert done.returncode == 0, done.stderr
    assert "pcm_s16le, 2 ch, 44100 Hz: transcoded to Opus (2 ch" in done.stdout
    x = np.frombuffer(decoded_pcm(out, 2), np.float32).reshape(-1, 2)
    assert len(x) == pytest.approx(VIDEO_END * 48000, abs=48)  # 0.6 s in, 0.4004 s out
    left, right = (np.sqrt(np.mean(c[len(c) // 4: 3 * len(c) // 4] ** 2)) for c in x.T)
    assert left == pytest.approx(0.125 / np.sqrt(2), rel=0.1)
    assert right == pytest.approx(left / 2, rel=0.1)


@pytest.mark.parametrize("name,codec", [("opus", "opus"), ("vorbis", "vorbis"),
                                        ("early", "opus")])
def test_opus_and_vorbis_are_copied_and_cut_to_the_video(inputs, tmp_path: Path, name: str,
                                                         codec: str) -> None:
    src = inputs[name]
    out = tmp_path / "out.webm"
    done = encode(str(src), "-o", str(out), *FAST)
    assert done.returncode == 0, done.stderr
    assert f"audio     {codec}, 1 ch" in done.stdout and "copied as it is" in done.stdout
    assert codecs(out) == [("video", "vp8"), ("audio", codec)]
    # Packet for packet a run of the input's: the audio outside the video's 0.4 s is left out.
    got, had = audio_packets(out), audio_packets(src)
    first = had.index(got[0])
    assert got == had[first:first + len(got)] and first + len(got) < len(had)
    if name == "early":
        assert first >= 10  # 0.3 s of 20 ms packets before the video, less what overlaps it
    v0, v1 = video_span(out)
    a0, a1 = audio_span(out)
    assert a0 == pytest.approx(v0, abs=FRAME) and a1 == pytest.approx(v1, abs=FRAME)
    assert a1 > v1 - 0.001  # no audio lost before the video's end


def test_no_audio_drops_it(inputs, tmp_path: Path) -> None:
    out = tmp_path / "out.webm"
    done = encode(str(inputs["aac"]), "-o", str(out), *FAST, "--no-audio")
    assert done.returncode == 0, done.stderr
    assert codecs(out) == [("video", "vp8")]
    assert "audio     aac, 1 ch, 44100 Hz: dropped, as asked" in done.stdout
    assert done.stderr == ""


def test_ivf_output_says_it_dropped_the_audio(inputs, tmp_path: Path) -> None:
    out = tmp_path / "out.ivf"
    done = encode(str(inputs["opus"]), "-o", str(out), *FAST)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        f"excamera encode: note: {out} holds video only, the input's audio was dropped "
        "(write .webm to keep it)"]
    assert codecs(out) == [("video", "vp8")]


def test_api_audio_setting(inputs, tmp_path: Path) -> None:
    """``audio=False`` is ``--no-audio``; the result says what became of the audio."""
    out = tmp_path / "out.webm"
    result = excamera.encode(inputs["vorbis"], out, audio=False, workers=2, passes=1)
    assert result.audio_dropped and result.audio.endswith("dropped, as asked")
    assert codecs(out) == [("video", "vp8")]
    with pytest.raises(SettingsError, match=r"^audio no: must be True or False$"):
        excamera.encode(inputs["vorbis"], tmp_path / "x.webm", audio="no")  # type: ignore
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.webm"]


def test_missing_pyav_is_one_line_before_any_work(inputs, tmp_path: Path) -> None:
    """Without PyAV (an install made with --no-deps): one line naming the requirement, for a
    non-Y4M input and for a WebM output, and no output."""
    code = ("import sys; sys.modules['av'] = None\n"
            "from excamera.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    y4m = shared_dir() / "clips" / "park_joy_160x90_10f.y4m"
    for src, out in ((inputs["aac"], tmp_path / "a.ivf"), (y4m, tmp_path / "b.webm")):
        done = subprocess.run([sys.executable, "-c", code, "encode", str(src), "-o", str(out),
                               *FAST], env=child_env(), capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 1
        lines = done.stderr.splitlines()
        assert len(lines) == 1, done.stderr
        assert lines[0].startswith("excamera encode: error: ")
        assert "needs av, which is not installed: pip install 'av" in lines[0]
        assert not out.exists()
