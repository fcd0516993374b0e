"""Pass 0 on Lambda: the static vpxenc in the zip, or libvpx in-process through PyAV's wheel?

For each shared clip, mu's pass-0 settings (two-pass, --good --cpu-used=0, CQ) with:
- Debian's /usr/bin/vpxenc (what the local backend runs: the reference);
- the static vpxenc from packaging/vpxenc/build.sh (what the Lambda zip ships);
and PyAV (libvpx inside its manylinux wheel, driven in this process):
- whether two-pass with mu's settings is reachable at all;
- one pass with every other setting of mu's mapped to libavcodec's options, against Debian's
  vpxenc with --passes=1: same bytes?, speed, size.
Footprint: what each option adds to the deployment zip, and whether PyAV's cp312 wheel passes
the zip's ELF policy. Times are CPU seconds (vpxenc's as a child, PyAV's in-process), the best
of --runs, so the other core's load disturbs them least. PyAV's one-pass encode is also run in
fresh processes with different histories (frames made before or during the encode, in either
order), because its output turned out to depend on them.

    python bench/lambda_pass0.py [--runs 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import ctypes
import hashlib
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from _common import REPO, settings, shared_dir
from excamera.awslambda import build, elf
from excamera.pipelines.xcenc.plan import VPXENC_SETTINGS
from excamera.xc.ivf import read_ivf
from excamera.xc.y4m import read_y4m

CLIPS = ["bus_cif_17f.y4m", "carphone_qcif_120f.y4m", "bigbuckbunny_320x180_48f.y4m"]
CQ = 30
SYSTEM_VPXENC = "/usr/bin/vpxenc"


def child_cpu(argv: list[str]) -> float:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(argv, check=True, capture_output=True)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def vpxenc(exe: str, clip: Path, out: Path, passes: int, runs: int) -> tuple[bytes, float, int]:
    """The output, the best CPU time of ``runs`` runs, and how many distinct outputs they made."""
    settings = [s if s != "--passes=2" else f"--passes={passes}" for s in VPXENC_SETTINGS]
    cpu, seen = float("inf"), set()
    for _ in range(runs):
        cpu = min(cpu, child_cpu([exe, *settings, f"--cq-level={CQ}", "-o", str(out), str(clip)]))
        seen.add(hashlib.sha256(out.read_bytes()).hexdigest())
    return out.read_bytes(), cpu, len(seen)


def pyav_context(width: int, height: int, fps: tuple[int, int]) -> av.CodecContext:
    """mu's settings as libavcodec's libvpx wrapper takes them (one pass)."""
    cc = av.CodecContext.create("libvpx", "w")
    cc.width, cc.height, cc.pix_fmt = width, height, "yuv420p"
    cc.time_base = Fraction(fps[1], fps[0])  # vpxenc's timebase is the Y4M's frame rate
    cc.thread_count = 1
    cc.gop_size = 128  # libvpx's kf_max_dist default; libavcodec's default gop is 12
    cc.bit_rate = 4294967295 * 1000  # --target-bitrate=4294967295 (kbit/s)
    cc.qmin, cc.qmax = 0, 63
    # --buf-*-sz cannot be expressed: libavcodec derives them from rc_buffer_size/bit_rate, an
    # int that cannot hold 40 s at this bit rate (vpxenc with default buffers gives the same
    # bytes as with mu's, below). --token-parts=0 is libvpx's default.
    cc.options = {"deadline": "good", "cpu-used": "0", "crf": str(CQ), "undershoot-pct": "100",
                  "auto-alt-ref": "1", "tune": "ssim"}
    return cc


def pyav_one_pass(clip: Path, prebuilt: bool) -> tuple[list[bytes], float]:
    """One encode; ``prebuilt`` makes every frame's planes before encoding, else each frame is
    made just before it is sent (the same pixels either way)."""
    hdr, pics = read_y4m(clip)

    def planes(p) -> np.ndarray:
        return np.frombuffer(p.to_bytes(), np.uint8).reshape(-1, hdr.width)

    ready = [planes(p) for p in pics] if prebuilt else None
    t0 = time.process_time()
    cc = pyav_context(hdr.width, hdr.height, hdr.fps or (30, 1))
    out = []
    for i, p in enumerate(pics):
        f = av.VideoFrame.from_ndarray(ready[i] if ready else planes(p), format="yuv420p")
        f.pts = i
        out += cc.encode(f)
    out += cc.encode(None)
    return [bytes(p) for p in out], time.process_time() - t0


def pyav_histories(clip: Path, reference: list[bytes]) -> list[dict]:
    """PyAV's one-pass output in fresh processes with different histories: each child
    encodes twice, prebuilt-first or fresh-first. The bytes should not depend on that."""
    runs = []
    for order in ("prebuilt,fresh", "fresh,prebuilt"):
        out = subprocess.run([sys.executable, __file__, "--pyav-child", str(clip), order],
                             check=True, capture_output=True, text=True).stdout
        for rec in json.loads(out):
            pk = [bytes.fromhex(h) for h in rec.pop("packets")]
            rec.update(bytes=sum(map(len, pk)), identical_frames=sum(
                a == b for a, b in zip(reference, pk, strict=False)),
                sha256=hashlib.sha256(b"".join(pk)).hexdigest()[:16])
            runs.append({"order": order, **rec})
    return runs


def pyav_child(clip: Path, order: str) -> None:
    recs = []
    for step, kind in enumerate(order.split(",")):
        pk, cpu = pyav_one_pass(clip, kind == "prebuilt")
        recs.append({"step": step, "frames_made": kind, "cpu_s": round(cpu, 3),
                     "packets": [p.hex() for p in pk]})
    print(json.dumps(recs))


def pyav_two_pass_reachable() -> str:
    """Try mu's two passes through PyAV; say exactly where it stops."""
    first = av.CodecContext.create("libvpx", "w")
    first.width, first.height, first.pix_fmt = 64, 64, "yuv420p"
    first.time_base = Fraction(1, 30)
    first.flags |= av.codec.context.Flags.pass1
    first.open()
    f = av.VideoFrame(64, 64, "yuv420p")
    f.pts = 0
    pkts = first.encode(f) + first.encode(None)
    stats = [a for a in dir(first) if "stats" in a]
    second = av.CodecContext.create("libvpx", "w")
    second.width, second.height, second.pix_fmt = 64, 64, "yuv420p"
    second.time_base = Fraction(1, 30)
    second.flags |= av.codec.context.Flags.pass2
    try:
        second.open()
        opened = "opened"
    except av.error.FFmpegError as exc:
        opened = f"fails to open: {exc}"
    return (f"pass 1 yields {len(pkts)} packets and PyAV exposes no first-pass statistics"
            f" (stats attributes: {stats or 'none'}; no stats_in/stats_out option); pass 2"
            f" {opened}")


def libvpx_version(lib_dir: Path) -> str:
    libs = sorted(lib_dir.glob("libvpx*.so*"))
    if not libs:
        return "none"
    lib = ctypes.CDLL(str(libs[0]))
    lib.vpx_codec_version_str.restype = ctypes.c_char_p
    return lib.vpx_codec_version_str().decode()


def pyav_wheel_footprint(tmp: Path) -> dict:
    """PyAV's cp312 manylinux wheel, as the zip would take it: sizes and the ELF policy."""
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    f"av=={av.__version__}", "--platform", build.PIP_PLATFORM,
                    "--platform", "manylinux_2_28_x86_64", "--implementation", "cp",
                    "--python-version", build.PYTHON_VERSION, "--only-binary=:all:",
                    "-d", str(tmp)], check=True, capture_output=True)
    wheel = next(tmp.glob("av-*.whl"))
    with zipfile.ZipFile(wheel) as zf:
        files = {i.filename: zf.read(i) for i in zf.infolist() if not i.is_dir()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in sorted(files.items()):
            zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    problems, infos = elf.check_tree(files)
    return {"wheel": wheel.name, "zipped": len(buf.getvalue()),
            "unzipped": sum(map(len, files.values())), "elf": len(infos),
            "elf_problems": problems}


def static_vpxenc() -> Path:
    out = subprocess.run(["sh", str(REPO / "packaging/vpxenc/build.sh")], check=True,
                         capture_output=True, text=True).stdout
    return Path(out.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--pyav-child", nargs=2, metavar=("CLIP", "ORDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.pyav_child:
        pyav_child(Path(args.pyav_child[0]), args.pyav_child[1])
        return 0
    results: dict = {"settings": settings(args), "cq": CQ, "clips": {}}
    static = static_vpxenc()
    av_libs = Path(av.__file__).parent.parent / "av.libs"
    results["libvpx"] = {"debian": subprocess.run(
        [SYSTEM_VPXENC, "--help"], capture_output=True, text=True).stdout.split("\n")[0],
        "pyav": libvpx_version(av_libs), "pyav_version": av.__version__}
    results["pyav_two_pass"] = pyav_two_pass_reachable()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        for name in CLIPS:
            clip = shared_dir() / "clips" / name
            deb2, deb2_cpu, deb2_n = vpxenc(SYSTEM_VPXENC, clip, tmp / "d2.ivf", 2, args.runs)
            st2, st2_cpu, st2_n = vpxenc(str(static), clip, tmp / "s2.ivf", 2, args.runs)
            deb1, deb1_cpu, deb1_n = vpxenc(SYSTEM_VPXENC, clip, tmp / "d1.ivf", 1, args.runs)
            deb1_frames = [f.data for f in read_ivf(tmp / "d1.ivf")[1]]
            histories = pyav_histories(clip, deb1_frames)
            results["clips"][name] = {
                "frames": len(deb1_frames),
                "two_pass": {"identical": deb2 == st2, "bytes": len(deb2),
                             "distinct_outputs_over_runs": {"debian": deb2_n, "static": st2_n},
                             "debian_cpu_s": round(deb2_cpu, 3),
                             "static_cpu_s": round(st2_cpu, 3)},
                "one_pass": {"debian_bytes": sum(map(len, deb1_frames)),
                             "debian_distinct_outputs_over_runs": deb1_n,
                             "debian_cpu_s": round(deb1_cpu, 3),
                             "pyav_runs": histories,
                             "pyav_distinct_outputs": len({h["sha256"] for h in histories}),
                             "pyav_cpu_s": min(h["cpu_s"] for h in histories),
                             "two_pass_bytes_saved_pct": round(
                                 100 * (1 - len(deb2) / max(1, len(deb1))), 1)},
            }
            print(name, json.dumps(results["clips"][name]), flush=True)
        results["footprint"] = {
            "static_vpxenc_bytes": static.stat().st_size,
            "static_vpxenc_zipped": len(_deflate(static.read_bytes())),
            "pyav": pyav_wheel_footprint(tmp),
        }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _deflate(data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("x", data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)
    return buf.getvalue()


if __name__ == "__main__":
    os.environ.setdefault("EXCAMERA_SHARED", str(REPO.parent / "shared"))
    sys.exit(main())
