"""The png2y4m job (mu's README example): each worker turns nFrames PNGs into one Y4M chunk.

Keys, as mu's png2y4m_server.py used them:

- input  ``<vid>-<inFormat>/%08d.png``, numbered from 1; worker k takes frames
  ``1 + nFrames*(k+offset)`` .. ``nFrames*(k+offset+1)``
- output ``<vid>-y4m_<nFrames as %02d>/%08d.y4m``, numbered ``k + offset``

The machine is restartable (it only writes its own output key), so ``--retries`` can relaunch it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..mu.machines import JobContext, WorkerHandle
from ..mu.operations import OpContext, OperationRegistry
from .png2y4m import DEFAULT_MAX_PIXELS

OPERATION_MODULE = __name__


@dataclass(frozen=True)
class Png2Y4MParams:
    vid_name: str
    in_format: str = "png16"
    n_frames: int = 6
    offset: int = 0
    #: the largest PNG (width x height) a worker converts; see png2y4m.DEFAULT_MAX_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS

    def input_keys(self, k: int) -> list[str]:
        first = 1 + self.n_frames * (k + self.offset)
        return [f"{self.vid_name}-{self.in_format}/{i:08d}.png"
                for i in range(first, first + self.n_frames)]

    def output_key(self, k: int) -> str:
        return f"{self.vid_name}-y4m_{self.n_frames:02d}/{k + self.offset:08d}.y4m"


def _png2y4m_op(ctx: OpContext, pngs: list[str], out: str,
                max_pixels: int = DEFAULT_MAX_PIXELS) -> dict[str, Any]:
    """Worker operation ``png2y4m``: convert the retrieved PNGs (in order) into one Y4M file."""
    from .png2y4m import convert_pngs

    target = ctx.path(out)
    try:
        convert_pngs([ctx.path(p) for p in pngs], target, max_pixels=int(max_pixels))
    except ValueError as exc:
        # Local files are named after their keys: strip the directory so the message names
        # the key (``clip-png16/00000007.png: not a readable PNG``).
        raise ValueError(str(exc).replace(f"{ctx.workdir}/", "")) from None
    return {"bytes": target.stat().st_size}


def register_operations(registry: OperationRegistry) -> None:
    registry.register("png2y4m", _png2y4m_op)


async def png2y4m_machine(w: WorkerHandle, ctx: JobContext) -> str:
    p: Png2Y4MParams = ctx.params["png2y4m"]
    keys = p.input_keys(w.id)
    # Local names equal the keys, so any error about a file names its storage key.
    files = list(keys)
    out_key = p.output_key(w.id)
    w.state = "retrieving"
    await w.retrieve_many(keys, files)
    w.state = "converting"
    await w.run_op("png2y4m", pngs=files, out="out.y4m", max_pixels=p.max_pixels)
    w.state = "uploading"
    await w.upload("out.y4m", out_key)
    w.state = "uploaded"
    return out_key
