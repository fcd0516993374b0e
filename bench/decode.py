"""Decode speed of xc against libvpx (`vpxdec --threads=1`), as ratios measured in one run.

Two measures, each alternating the two decoders run by run, medians over ``--runs``:

- **whole process**: ``excamera decode X.ivf -o /dev/null`` against
  ``vpxdec --threads=1 -o /dev/null X.ivf``. Both write every shown picture as Y4M (vpxdec
  writes Y4M unless told ``--i420``/``--rawvideo``; the kernel discards it), so both do the
  same work: start, read, decode, convert to I420 records, write. Wall time, and CPU time
  (user + system, from the child's resource usage): CPU time is what a loaded machine changes
  least, wall time is what a user waits.
- **in process**: this interpreter decoding every frame and writing its Y4M record to
  /dev/null as ``excamera decode`` does from a file (``StreamDecoder.decode_ivf_to``: the
  decoder reads, decodes and writes every frame in one call; no start-up), against the same
  vpxdec process.

Streams: the long ones of ``bench/streams.py`` (1280x720 528 frames and 640x272 250 frames,
each from vpxenc ``--good --cpu-used=0`` and ``--rt``; made once into ``--cache``), and two
conformance vectors. Start-up: ``excamera --help`` and a one-frame decode, against
``python -c pass``. The machine's load average is recorded before and after.

The package's bytecode is compiled first, as installing a wheel does: with
``PYTHONDONTWRITEBYTECODE`` set (as in some sandboxes) an editable checkout would otherwise
compile every module from source at each start, about 13 ms of a decode's start-up here.

    python bench/decode.py [--runs 5] [--cache DIR] [--json out.json]
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import need_tool, settings, shared_dir
from excamera.xc import codec
from excamera.xc.codec import Decoder
from excamera.xc.ivf import IvfReader, IvfWriter, read_ivf
from streams import DEFAULT_CACHE, ensure_streams

# The `excamera` command as installed beside this interpreter (the venv's console script).
_SCRIPT = Path(sys.executable).with_name("excamera")
EXCAMERA = ([str(_SCRIPT)] if _SCRIPT.exists() else
            [sys.executable, "-c", "import sys; from excamera.cli import main; sys.exit(main())"])


def timed(cmd: list[str]) -> tuple[float, float]:
    """(wall, CPU) seconds of one run of ``cmd``; its output is discarded, failure raises."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    err = proc.stderr.read() if proc.stderr else b""
    if status != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {err.decode(errors='replace')}")
    return wall, usage.ru_utime + usage.ru_stime


def in_process(path: Path) -> tuple[float, float]:
    """(wall, CPU) seconds of decoding every frame of ``path`` to Y4M records, here."""
    # Not at the top: isort would put it before _common, which must first move bench/ to the
    # end of sys.path (bench/excamera.py has the package's name).
    from excamera._xc import StreamDecoder

    t0, c0 = time.perf_counter(), time.process_time()
    decoder = StreamDecoder(None)
    with IvfReader(path) as reader, open(os.devnull, "wb") as out:
        rest = reader.unread()
        assert rest is not None, "a regular file"
        _, _, error, _ = decoder.decode_ivf_to(*rest, str(path), out.fileno(), True, b"", 0,
                                               None)
    if error is not None:
        raise SystemExit(f"bench: {error}")
    return time.perf_counter() - t0, time.process_time() - c0


def shown_frames(path: Path) -> int:
    decoder = Decoder()
    with IvfReader(path) as reader:
        return sum(decoder.decode_y4m(f.data, False) is not None for f in reader)


def summary(samples: list[tuple[float, float]]) -> dict[str, float]:
    walls, cpus = [s[0] for s in samples], [s[1] for s in samples]
    return {"wall_s": statistics.median(walls), "wall_min_s": min(walls),
            "wall_max_s": max(walls), "cpu_s": statistics.median(cpus),
            "cpu_min_s": min(cpus), "cpu_max_s": max(cpus)}


def compare(runs: int, ours, theirs) -> dict:
    """Alternate ``ours()`` and ``theirs()`` (each returning (wall, CPU)) ``runs`` times."""
    a, b = [], []
    for _ in range(runs):
        a.append(ours())
        b.append(theirs())
    xs, vs = summary(a), summary(b)
    return {"xc": xs, "vpxdec": vs, "ratio_wall": xs["wall_s"] / vs["wall_s"],
            "ratio_cpu": xs["cpu_s"] / vs["cpu_s"]}


def one_frame_stream(src: Path, out: Path) -> Path:
    header, frames = read_ivf(src)
    with IvfWriter(out, header.width, header.height, header.rate, header.scale) as w:
        w.write(frames[0].data)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE,
                    help="where bench/streams.py keeps the long streams")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    vpxdec = need_tool("vpxdec")
    compileall.compile_dir(Path(codec.__file__).parents[1], quiet=1)  # the excamera package
    vectors = shared_dir() / "vp8-test-vectors"
    streams = {name: path for name, path in ensure_streams(args.cache).items()}
    streams["vector-00-comprehensive-008"] = vectors / "vp80-00-comprehensive-008.ivf"
    streams["vector-05-sharpness-1438"] = vectors / "vp80-05-sharpness-1438.ivf"
    load_before = os.getloadavg()
    rows = []
    for name, path in streams.items():
        header, frames = read_ivf(path)

        def vpx(p: Path = path) -> tuple[float, float]:
            return timed([vpxdec, "--threads=1", "-o", "/dev/null", str(p)])

        def whole(p: Path = path) -> tuple[float, float]:
            return timed([*EXCAMERA, "decode", str(p), "-o", "/dev/null"])

        rows.append({"stream": name, "size": f"{header.width}x{header.height}",
                     "packets": len(frames), "shown_frames": shown_frames(path),
                     "whole_process": compare(args.runs, whole, vpx),
                     "in_process": compare(args.runs, lambda p=path: in_process(p), vpx)})
    with tempfile.TemporaryDirectory() as tmp:
        one = one_frame_stream(vectors / "vp80-00-comprehensive-001.ivf", Path(tmp) / "one.ivf")
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "excamera --help": [*EXCAMERA, "--help"],
            "excamera decode (one 176x144 frame)": [*EXCAMERA, "decode", str(one), "-o",
                                                    "/dev/null"],
            "vpxdec (one 176x144 frame)": [vpxdec, "--threads=1", "-o", "/dev/null", str(one)],
        }
        samples: dict[str, list] = {k: [] for k in commands}
        for _ in range(max(args.runs, 9)):
            for k, cmd in commands.items():
                samples[k].append(timed(cmd))
        startup = {k: summary(v) for k, v in samples.items()}
    load_after = os.getloadavg()

    print(f"load average before {load_before[0]:.1f}, after {load_after[0]:.1f} "
          f"({os.cpu_count()} CPUs)")
    print(f"{'stream':30} {'size':>9} {'shown':>6}   whole process (wall, CPU)   "
          "in process (wall, CPU)")
    for r in rows:
        w, i = r["whole_process"], r["in_process"]
        print(f"{r['stream']:30} {r['size']:>9} {r['shown_frames']:6}   "
              f"{w['ratio_wall']:5.2f}x {w['ratio_cpu']:5.2f}x"
              f"   ({w['xc']['wall_s']:.3f} vs {w['vpxdec']['wall_s']:.3f} s)   "
              f"{i['ratio_wall']:5.2f}x {i['ratio_cpu']:5.2f}x")
    for k, v in startup.items():
        print(f"start-up: {k:40} wall {v['wall_s'] * 1000:6.1f} ms  "
              f"CPU {v['cpu_s'] * 1000:6.1f} ms")
    if args.json:
        out = {"settings": settings(args), "load_average": {"before": load_before,
                                                             "after": load_after},
               "rows": rows, "startup": startup}
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
