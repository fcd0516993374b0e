"""``xc-enc``: alfalfa's encoder command line, over :mod:`excamera.xc.encoder`.

Two modes, as in alfalfa:

- **Primary encode** (no ``-r``): encode ``INPUT`` (``-i y4m``, the default, or ``-i ivf``: an
  IVF is decoded with our decoder first and its pictures encoded) into ``-o`` (output.ivf).
  The rate mode is ``-y Q`` (constant quantizer index), ``-F FILE`` (target frame sizes,
  one byte count per line, frame i aiming at line i) or, when neither is given, ``-s SSIM``
  (per-frame target SSIM, default 0.99; see :mod:`excamera.xc.encoder` for which SSIM and
  how the quantizer is searched). The first frame is a key frame unless ``-I STATE`` gives a
  state to continue from (then every frame is an inter frame predicted from that state's
  references); ``--kf-dist N`` adds a key frame every N frames. ``-q best|rt`` picks the
  encoder's speed (default good). ``--two-pass`` searches each frame's quantizer at realtime
  speed first, then refines it at the requested speed (no effect with ``-y``).
- **Re-encode** (``-r``, ExCamera's rebase): re-encode the chunk ``INPUT`` against the state
  ``-I`` (the predecessor's final state), reusing the prediction decisions of this chunk's
  previous encode ``-p PRED.ivf``, which was decoded from ``-S STATE`` (or, without ``-S``,
  starts with a key frame). ``-e``: ``PRED.ivf`` starts with one extra frame that is dropped.
  ``-w`` weights the key frame's quantizer, and mu's phase flags ``--s-ac-qi``,
  ``--fix-prob-tables`` and ``--reencode-first-frame`` go to the rebase unchanged (alfalfa's
  ``--refine-sw`` is not implemented, so it is not accepted). Without ``-W`` a re-encode first
  waits for end-of-file on standard input, before it reads any file: mu starts the process
  early and closes its stdin once the predecessor's state (the ``-I`` file) has arrived.

Output: an IVF whose header's unused field (bytes 28..32, little-endian) holds the low 32 bits
of the *entry* state's content hash (the state the first frame is decoded from: a fresh state,
``-I`` for encode-given-state and re-encodes), so a stream says what it must be decoded from.
``-O`` writes the final decoder state (what ``xc-dump`` of the output computes).

Every failure is one line on stderr naming the file, and a non-zero exit; never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from excamera.xc.ivf import IvfError, IvfReader, IvfWriter
from excamera.xc.tools import resolve_paths
from excamera.xc.y4m import Picture, Y4MError, Y4MReader

TYPE_CHECKING = False  # typing is not imported at run time: `xc-enc --help` starts faster
if TYPE_CHECKING:
    from typing import TextIO

    from excamera.xc.encoder import ReencodeOptions

DEFAULT_SSIM = 0.99
# encoder.SPEEDS, spelled out: this module stays light at start-up (a test checks they agree).
_SPEEDS = ("best", "good", "good-split", "good-refs", "rt")


class EncError(Exception):
    """A one-line failure for xc-enc to print before exiting non-zero."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xc-enc",
        description="Encode a Y4M (or IVF) clip with the xc VP8 encoder, or re-encode a chunk "
        "against another chunk's state (-r). Options follow alfalfa's xc-enc.",
    )
    p.add_argument("input", type=Path, metavar="INPUT", help="input clip (see -i)")
    p.add_argument("-o", "--output", type=Path, default=Path("output.ivf"),
                   help="output IVF (default output.ivf)")
    p.add_argument("-i", "--input-format", choices=("y4m", "ivf"), default="y4m",
                   help="input format (ivf: decoded first, its pictures encoded)")
    p.add_argument("-s", "--ssim", type=float, default=None,
                   help=f"target SSIM per frame (default {DEFAULT_SSIM} when neither -y nor -F)")
    p.add_argument("-y", "--y-ac-qi", type=int, default=None,
                   help="constant quantizer index 0..127")
    p.add_argument("-F", "--frame-sizes", type=Path, default=None,
                   help="target frame sizes, one byte count per line")
    p.add_argument("-q", "--quality", choices=_SPEEDS,
                   default=None,
                   help="encoder effort: best, good, good-split (good with best's SPLITMV "
                   "search), good-refs (good with SPLITMV on every reference) or rt (default "
                   "good; with -r, the converted first frame's encode, default rt)")
    p.add_argument("--two-pass", action="store_true",
                   help="search each frame's quantizer at realtime speed, then refine it")
    p.add_argument("--kf-dist", type=int, default=None,
                   help="key frame every N frames (default: only the first)")
    p.add_argument("-O", "--output-state", type=Path, default=None, help="write the final state")
    p.add_argument("-I", "--input-state", type=Path, default=None,
                   help="state to encode from (re-encode: the predecessor's final state)")
    p.add_argument("-r", "--reencode", action="store_true", help="re-encode (rebase) a chunk")
    p.add_argument("-p", "--pred-ivf", type=Path, default=None,
                   help="re-encode: this chunk's previous encode")
    p.add_argument("-S", "--pred-state", type=Path, default=None,
                   help="re-encode: the state the -p stream was decoded from")
    p.add_argument("-w", "--kf-q-weight", type=float, default=None,
                   help="re-encode: alfalfa's key-frame quantizer weight w (first frame at "
                   "w*kf_q + (1-w)*next_q); default: match the first frame's quality to the "
                   "prediction stream's key frame (within 0.25 dB)")
    p.add_argument("-e", "--extra-frame", action="store_true",
                   help="re-encode: the -p stream starts with an extra frame; drop it")
    p.add_argument("-W", "--no-wait", action="store_true",
                   help="re-encode: do not wait for EOF on stdin before starting")
    p.add_argument("--s-ac-qi", type=int, default=None, help="re-encode: the S phase's qindex")
    p.add_argument("--fix-prob-tables", action="store_true",
                   help="re-encode: keep the entry state's probability tables")
    p.add_argument("--reencode-first-frame", action="store_true",
                   help="re-encode: re-encode the first frame too (not only its residual)")
    p.add_argument("--keep-golden", action="store_true",
                   help="re-encode: the converted first frame refreshes last and alt-ref only, "
                   "leaving the input state's golden picture")
    p.add_argument("--last-keeps-refs", action="store_true",
                   help="re-encode: the last frame keeps its own refresh flags instead of "
                   "refreshing all three references, so the chunk hands on its golden picture")
    p.add_argument("--key-at-cuts", action="store_true",
                   help="re-encode: a frame much larger than the chunk's others (a scene cut) "
                   "becomes a key frame when a key frame of equal SSIM is smaller")
    p.add_argument("--activity-rd", action="store_true",
                   help="re-encode: weight each rebased macroblock's rate-distortion trade by "
                   "its activity (flat ones keep more residual), for SSIM as vpxenc's "
                   "--tune=ssim does")
    p.add_argument("--content-weight", action="store_true",
                   help="re-encode: move -w by how static the chunk is (its key frame's size "
                   "over its other frames', relative to their quantizer): a lower first-frame "
                   "quantizer for a static chunk, a higher one for a busy chunk")
    p.add_argument("--full-key", action="store_true",
                   help="re-encode: a first key frame that stays a key frame (a fresh input "
                   "state) is encoded in full at its quantizer (--s-ac-qi) rather than "
                   "re-quantized with the prediction stream's intra modes")
    p.add_argument("--floored-key", action="store_true",
                   help="re-encode: the prediction's key frame was floored near the boost "
                   "(vpxenc --min-q), so -w weights from quantizer 0, not from its quantizer, "
                   "to the next frame's")
    p.add_argument("--static-key", type=float, default=None, metavar="W",
                   help="re-encode: a first key frame that stays a key frame (a fresh input "
                   "state), of a chunk whose previous encode reads static, is coded at (1-W) "
                   "times the next frame's quantizer instead of --s-ac-qi")
    p.add_argument("--redecide-first", action="store_true",
                   help="re-encode: a first frame that is an inter frame in the previous "
                   "encode gets its modes and motion vectors decided anew against the input "
                   "state (a full encode at -q's effort), then rebased like the others")
    p.add_argument("--redecide-rest", choices=_SPEEDS, default=None,
                   help="re-encode: every inter frame after the first gets its modes and "
                   "motion vectors decided anew (a full encode at SPEED onto the state the "
                   "frames before it reach), then rebased like the others")
    p.add_argument("--seeded-first", action="store_true",
                   help="re-encode: a first frame that is an inter frame in the previous "
                   "encode gets its modes and motion vectors decided anew against the input "
                   "state among a few candidates around the previous encode's own (cheaper "
                   "than --redecide-first), and is written as decided")
    p.add_argument("--golden-to-altref", action="store_true",
                   help="re-encode: the converted first frame copies the input state's golden "
                   "picture to alt-ref instead of refreshing alt-ref with itself")
    p.add_argument("--choose-refs", action="store_true",
                   help="re-encode: each rebased macroblock may switch to the reference that "
                   "predicts it best with its own motion vectors")
    return p


def read_y4m_pictures(path: Path) -> tuple[list[Picture], tuple[int, int]]:
    """All pictures of a Y4M file and its (rate, scale) for the IVF header."""
    try:
        with Y4MReader(path) as reader:
            pictures = list(reader)
            fps = reader.fps or (30, 1)
    except Y4MError as exc:
        raise EncError(str(exc)) from None
    except OSError as exc:
        raise EncError(f"{path}: {exc.strerror or exc}") from None
    if not pictures:
        raise EncError(f"{path}: no frames")
    return pictures, fps


def read_ivf_frames(path: Path) -> tuple[list[bytes], tuple[int, int], tuple[int, int]]:
    """(frames, (width, height), (rate, scale)) of an IVF file."""
    try:
        with IvfReader(path) as reader:
            frames = [f.data for f in reader]
            size = (reader.width, reader.height)
            timebase = (reader.header.rate or 30, reader.header.scale or 1)
    except IvfError as exc:
        raise EncError(str(exc)) from None
    if not frames:
        raise EncError(f"{path}: no frames")
    return frames, size, timebase


def decode_ivf_pictures(path: Path) -> tuple[list[Picture], tuple[int, int]]:
    from excamera.xc.codec import DecodeError, Decoder

    frames, _, timebase = read_ivf_frames(path)
    decoder = Decoder()
    pictures: list[Picture] = []
    try:
        for data in frames:
            picture = decoder.decode(data)
            if picture is not None:
                pictures.append(picture)
    except DecodeError as exc:
        raise EncError(f"{path}: {exc}") from None
    if not pictures:
        raise EncError(f"{path}: no shown frames")
    return pictures, timebase


def load_state(path: Path, what: str):
    from excamera.xc.codec import State, StateError

    try:
        return State.from_bytes(path.read_bytes())
    except OSError as exc:
        raise EncError(f"{path}: {what}: {exc.strerror or exc}") from None
    except StateError as exc:
        raise EncError(f"{path}: {what} is not a valid xc state: {exc}") from None


def read_frame_sizes(path: Path, frames: int) -> tuple[int, ...]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise EncError(f"{path}: frame sizes: {getattr(exc, 'strerror', None) or exc}") from None
    sizes: list[int] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = int(line.strip())
        except ValueError:
            raise EncError(f"{path}: line {n}: {line.strip()!r} is not a byte count") from None
        if value <= 0:
            raise EncError(f"{path}: line {n}: frame size {value} is not positive")
        sizes.append(value)
    if len(sizes) < frames:
        raise EncError(f"{path}: {len(sizes)} frame sizes for {frames} frames")
    return tuple(sizes)


def wait_for_stdin_eof() -> None:
    """Block until standard input reaches end-of-file (its content is discarded)."""
    stream = sys.stdin.buffer if sys.stdin is not None else None
    if stream is None:
        return
    try:
        while stream.read(65536):
            pass
    except (OSError, ValueError):  # closed or not readable: nothing to wait for
        return


def _rate_mode(args: argparse.Namespace, frames: int):
    from excamera.xc.encoder import ConstantQ, TargetSize, TargetSsim

    if args.y_ac_qi is not None and args.frame_sizes is not None:
        raise EncError("-y and -F are different rate modes: give one")
    if args.y_ac_qi is not None:
        if not 0 <= args.y_ac_qi <= 127:
            raise EncError(f"-y {args.y_ac_qi}: quantizer index must be 0..127")
        return ConstantQ(args.y_ac_qi)
    if args.frame_sizes is not None:
        return TargetSize(read_frame_sizes(args.frame_sizes, frames))
    target = DEFAULT_SSIM if args.ssim is None else args.ssim
    if not 0.0 < target <= 1.0:
        raise EncError(f"-s {target}: SSIM target must be in (0, 1]")
    return TargetSsim(target)


def _write_outputs(args: argparse.Namespace, frames: list[bytes], final_state,
                   size: tuple[int, int],
                   timebase: tuple[int, int], entry_hash: int) -> None:
    try:
        with IvfWriter(args.output, size[0], size[1], rate=timebase[0], scale=timebase[1],
                       unused=entry_hash) as writer:
            for data in frames:
                writer.write(data)
    except (IvfError, OSError) as exc:
        raise EncError(f"{args.output}: {getattr(exc, 'strerror', None) or exc}") from None
    if args.output_state is not None:
        try:
            args.output_state.write_bytes(final_state.to_bytes())
        except OSError as exc:
            raise EncError(f"{args.output_state}: {exc.strerror or exc}") from None


def _read_input(args: argparse.Namespace) -> tuple[list[Picture], tuple[int, int]]:
    if args.input_format == "ivf":
        return decode_ivf_pictures(args.input)
    return read_y4m_pictures(args.input)


def primary_encode(args: argparse.Namespace) -> int:
    from excamera.xc.codec import State
    from excamera.xc.encoder import EncodeError, Encoder, entry_hash32

    pictures, timebase = _read_input(args)
    width, height = pictures[0].width, pictures[0].height
    mode = _rate_mode(args, len(pictures))
    state = load_state(args.input_state, "input state") if args.input_state else State()
    if args.input_state is not None and state.reference("last") is not None and (
            state.width, state.height) != (width, height):
        raise EncError(f"{args.input_state}: state is {state.width}x{state.height}, "
                       f"{args.input} is {width}x{height}")
    if args.kf_dist is not None and args.kf_dist < 1:
        raise EncError(f"--kf-dist {args.kf_dist}: must be at least 1")
    try:
        encoder = Encoder(width, height, quality=mode, speed=args.quality or "good", state=state,
                          kf_dist=args.kf_dist, two_pass=args.two_pass)
    except ValueError as exc:  # what VP8 cannot code (the Y4M reader already refuses most)
        raise EncError(f"{args.input}: {exc}") from None
    entry = entry_hash32(state)
    frames: list[bytes] = []
    for i, picture in enumerate(pictures):
        if (picture.width, picture.height) != (width, height):
            raise EncError(f"{args.input}: frame {i} is {picture.width}x{picture.height}, "
                           f"frame 0 is {width}x{height}")
        try:
            frames.append(encoder.encode(picture))
        except EncodeError as exc:
            raise EncError(f"{args.input}: frame {i}: {exc}") from None
    _write_outputs(args, frames, encoder.state, (width, height), timebase, entry)
    return 0


def reencode_options(args: argparse.Namespace) -> ReencodeOptions:
    """The rebase's options that xc-enc's re-encode flags (already parsed) ask for."""
    from excamera.xc.encoder import ReencodeOptions

    return ReencodeOptions(kf_q_weight=args.kf_q_weight, s_ac_qi=args.s_ac_qi,
                           reencode_first_frame=args.reencode_first_frame,
                           fix_prob_tables=args.fix_prob_tables,
                           keep_golden=args.keep_golden,
                           last_refreshes_all=not args.last_keeps_refs,
                           choose_refs=args.choose_refs, speed=args.quality or "rt",
                           key_at_cuts=args.key_at_cuts, activity_rd=args.activity_rd,
                           kf_weight_by_content=args.content_weight, full_key=args.full_key,
                           key_floored=args.floored_key, static_key_weight=args.static_key,
                           redecide_first=args.redecide_first,
                           seeded_first=args.seeded_first,
                           golden_to_altref=args.golden_to_altref,
                           redecide_rest=args.redecide_rest)


def reencode(args: argparse.Namespace) -> int:
    from excamera.xc.encoder import EncodeError, reencode_chunk

    if not args.no_wait:
        wait_for_stdin_eof()
    if args.input_state is None:
        raise EncError("-r needs -I: the state to re-encode against")
    if args.pred_ivf is None:
        raise EncError("-r needs -p: the chunk's previous encode")
    if args.s_ac_qi is not None and not 0 <= args.s_ac_qi <= 127:
        raise EncError(f"--s-ac-qi {args.s_ac_qi}: quantizer index must be 0..127")
    if args.kf_q_weight is not None and not 0.0 <= args.kf_q_weight <= 1.0:
        raise EncError(f"-w {args.kf_q_weight}: key-frame weight must be in 0..1")
    if args.static_key is not None and not 0.0 <= args.static_key <= 1.0:
        raise EncError(f"--static-key {args.static_key}: the weight must be in 0..1")
    input_state = load_state(args.input_state, "input state")
    pred_state = load_state(args.pred_state, "prediction state") if args.pred_state else None
    pictures, timebase = _read_input(args)
    width, height = pictures[0].width, pictures[0].height
    pred, pred_size, _ = read_ivf_frames(args.pred_ivf)
    if args.extra_frame:
        pred = pred[1:]
        if not pred:
            raise EncError(f"{args.pred_ivf}: only the extra frame (-e), nothing to re-encode")
    if pred_size != (width, height):
        raise EncError(f"{args.pred_ivf}: prediction stream is {pred_size[0]}x{pred_size[1]}, "
                       f"{args.input} is {width}x{height}")
    # Hidden frames (vpxenc's alt-refs) only update references: count shown ones.
    shown = sum(1 for f in pred if f and (f[0] >> 4) & 1)
    if shown != len(pictures):
        extra = " after dropping the extra frame (-e)" if args.extra_frame else ""
        raise EncError(f"{args.pred_ivf}: {shown} shown prediction frames{extra} for "
                       f"{len(pictures)} frames in {args.input}")
    if input_state.reference("last") is not None and (
            input_state.width, input_state.height) != (width, height):
        raise EncError(f"{args.input_state}: state is {input_state.width}x{input_state.height}, "
                       f"{args.input} is {width}x{height}")
    opts = reencode_options(args)
    try:
        chunk = reencode_chunk(input_state, pred, pred_state, pictures, opts)
    except EncodeError as exc:
        raise EncError(f"{args.input}: re-encode against {args.input_state}: {exc}") from None
    _write_outputs(args, chunk.frames, chunk.state, (width, height), timebase,
                   chunk.input_state_hash & 0xFFFFFFFF)
    return 0


def main(argv: list[str] | None = None, *, cwd: Path | None = None,
         out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Entry point of the ``xc-enc`` console script and ``tools_main xc-enc``.

    With ``cwd`` (``tools_main.run_in_process``) relative paths are taken from there and a
    re-encode does not wait for stdin: inside a worker there is no command pipe to close.
    """
    args = build_parser().parse_args(argv)
    if cwd is not None:
        resolve_paths(args, cwd)
        args.no_wait = True
    try:
        return reencode(args) if args.reencode else primary_encode(args)
    except EncError as exc:
        print(f"xc-enc: {exc}", file=err or sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
