"""``excamera encode --target-bitrate`` on every shared clip: how close it lands, and its BD-rate
against vpxenc's own two-pass VBR at the same speed settings.

For each clip and each of four target bitrates:

- ``excamera encode CLIP --target-bitrate T`` (ExCamera[6,16], real workers, pass 0 by vpxenc):
  the file's bitrate, its error against T, the trial encodes rate control ran;
- one serial ``vpxenc`` with mu's settings (``xcenc.plan.VPXENC_SETTINGS``) but
  ``--end-usage=vbr --target-bitrate=T`` (two-pass, ``--good --cpu-used=0``, auto alt-ref,
  ``--tune=ssim``): the JSON's ``baseline`` is the exact command.

Both are decoded with xc and measured against the source (luma SSIM in dB, Y-PSNR); the BD-rate
of ExCamera against vpxenc VBR is reported at equal SSIM and at equal PSNR (four points each).

    python bench/ratecontrol.py [--clips a.y4m,b.y4m] [--workers 2] [--json F]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# _common first: it puts the real `excamera` package ahead of this folder on the import path
from _common import need_tool, settings, shared_dir
from excamera.metrics import bd_rate, ssim_db
from excamera.pipelines.encode.run import measure
from excamera.pipelines.xcenc.plan import VPXENC_SETTINGS
from excamera.xc.ivf import IvfReader

# Four targets per clip (kbit/s), spanning roughly cq levels 12..44 of each.
TARGETS = {
    "carphone_qcif_120f.y4m": (80, 140, 200, 300),
    "bigbuckbunny_320x180_48f.y4m": (250, 400, 550, 750),
    "bus_cif_17f.y4m": (600, 1000, 1600, 2500),
    "park_joy_160x90_10f.y4m": (400, 700, 1000, 1500),
}
VBR_SETTINGS = [a for a in VPXENC_SETTINGS if not a.startswith(("--end-usage", "--target-b"))
                ] + ["--end-usage=vbr"]


def measured(clip: Path, ivf: Path, seconds: float) -> dict:
    with IvfReader(ivf) as r:
        frames = [f.data for f in r]
        fps = r.header.rate / r.header.scale
    meter = measure(clip, frames)
    size = sum(len(f) for f in frames)
    return {"bytes": size, "kbps": size * 8 / (meter.frames / fps) / 1000,
            "ssim_db": ssim_db(meter.ssim), "ssim": meter.ssim, "psnr_y": meter.psnr_y,
            "seconds": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default=",".join(TARGETS))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    vpxenc = need_tool("vpxenc")
    result: dict = {"settings": {**settings(args), "baseline": " ".join(
        ["vpxenc", *VBR_SETTINGS, "--target-bitrate=T", "-o", "OUT.ivf", "CLIP.y4m"])},
        "clips": {}}
    for name in args.clips.split(","):
        clip = shared_dir() / "clips" / name
        rows = []
        with tempfile.TemporaryDirectory() as tmp:
            tmpd = Path(tmp)
            for target in TARGETS[name]:
                out = tmpd / f"ex-{target}.ivf"
                t0 = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "excamera.cli", "encode", str(clip), "-o", str(out),
                     "--target-bitrate", str(target), "--workers", str(args.workers),
                     "-t", "0"], check=True, capture_output=True, text=True, cwd=tmpd)
                ex = measured(clip, out, time.perf_counter() - t0)
                ex["error"] = ex["kbps"] / target - 1
                trials = [ln for ln in done.stdout.splitlines() if "trial encodes" in ln]
                ex["trials"] = trials[0].split("trial encodes at ")[1] if trials else ""
                single = tmpd / f"vpx-{target}.ivf"
                t0 = time.perf_counter()
                subprocess.run([vpxenc, *VBR_SETTINGS, f"--target-bitrate={target}", "-o",
                                str(single), str(clip)], check=True, capture_output=True)
                vp = measured(clip, single, time.perf_counter() - t0)
                vp["error"] = vp["kbps"] / target - 1
                rows.append({"target_kbps": target, "excamera": ex, "vpxenc_vbr": vp})
                print(f"{name} {target:5d} kbit/s  ExCamera {ex['kbps']:7.1f} ({ex['error']:+.1%}"
                      f", trials {ex['trials']}) SSIM {ex['ssim']:.4f} {ex['seconds']:5.1f} s | "
                      f"vpxenc VBR {vp['kbps']:7.1f} ({vp['error']:+.1%}) SSIM {vp['ssim']:.4f}",
                      flush=True)
        entry: dict = {"rows": rows,
                       "max_abs_error": max(abs(r["excamera"]["error"]) for r in rows)}
        for key in ("ssim_db", "psnr_y"):
            try:
                entry[f"bd_rate_{key}"] = bd_rate(
                    [r["vpxenc_vbr"]["bytes"] for r in rows],
                    [r["vpxenc_vbr"][key] for r in rows],
                    [r["excamera"]["bytes"] for r in rows], [r["excamera"][key] for r in rows])
            except ValueError as exc:
                entry[f"bd_rate_{key}"] = None
                print(f"{name}: BD-rate ({key}): {exc}")
        result["clips"][name] = entry
        fmt = {k: "n/a" if entry[k] is None else f"{entry[k]:+.1f}%"
               for k in ("bd_rate_ssim_db", "bd_rate_psnr_y")}
        print(f"{name}: largest rate error {entry['max_abs_error']:.1%}; BD-rate against vpxenc "
              f"VBR: SSIM {fmt['bd_rate_ssim_db']}, PSNR-Y {fmt['bd_rate_psnr_y']}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
