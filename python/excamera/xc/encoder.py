"""The VP8 encoder's Python API: encode pictures from any decoder state, with a rate mode.

The Rust core encodes one frame at a time as a pure step ``(state, picture, qindex, ...) ->
(bytes, state', reconstruction)`` (``excamera._xc.encode_frame``, run with the GIL released).
This module adds what an encoder *session* needs on top:

- a key-frame policy: a key frame when the state has no reference picture (a fresh
  :class:`State`) or a different picture size, every ``kf_dist`` frames if asked, inter
  frames otherwise. Starting from a state loaded from elsewhere therefore continues that
  stream with inter frames: this is ExCamera's "encode given state".
- rate modes, choosing each frame's quantizer index (``y_ac_qi``, 0..127):

  * :class:`ConstantQ`: every frame at one qindex (alfalfa's ``-y``).
  * :class:`TargetSsim`: per frame, the *largest* qindex (fewest bits) whose reconstruction
    still has SSIM >= target against the source, found by bisection over 0..127 (7 trial
    encodes). SSIM is the Wang et al. (2004) Gaussian-window SSIM on luma of
    :func:`excamera.metrics.ssim` (11x11, sigma 1.5), computed on the encoder's
    reconstruction, which is bit-exactly what any decoder shows. Quality is not strictly
    monotonic in qindex, so bisection can settle one step off the true optimum; it never
    returns a frame below target unless even qindex 0 is below it (then qindex 0 is used).
  * :class:`TargetSize`: per frame, the *smallest* qindex (best quality) whose frame is at
    most the target byte count, by the same bisection; if even qindex 127 is too large, 127.

- two-pass (``two_pass=True``, with a searching rate mode): pass 1 runs the qindex search at
  realtime speed (cheap motion search) to choose each frame's qindex; pass 2 encodes at the
  requested speed from that choice: if the target holds there, one step cheaper is tried and
  kept if it still holds; if not, qindex steps toward quality until it holds (usually 2
  encodes). It pays only when the requested speed is much slower than realtime (``-q best``);
  with :class:`ConstantQ` it changes nothing.

:func:`reencode_chunk` is ExCamera's rebase: a chunk re-encoded against another worker's
state, reusing the prediction decisions of the chunk's previous encode.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from excamera._xc import EncodeError
from excamera._xc import encode_frame as _encode_frame
from excamera.metrics import ssim
from excamera.xc.codec import State
from excamera.xc.y4m import Picture

__all__ = [
    "ConstantQ",
    "EncodeError",
    "EncodedFrame",
    "Encoder",
    "RateMode",
    "ReencodeOptions",
    "ReencodedChunk",
    "SPEEDS",
    "TargetSize",
    "TargetSsim",
    "encode_picture",
    "entry_hash32",
    "reencode_chunk",
]

SPEEDS = ("best", "good", "good-split", "good-refs", "rt")
MAX_QINDEX = 127


def entry_hash32(state: State) -> int:
    """The low 32 bits of ``state``'s content hash, as xc-enc records it in the IVF header."""
    return int(state.hash, 16) & 0xFFFFFFFF


@dataclass(frozen=True)
class EncodedFrame:
    """One encoded frame: its bytes, the state after it, the picture it decodes to."""

    data: bytes
    state: State
    recon: Picture
    qindex: int
    key_frame: bool
    trials: int = 1  # encodes spent choosing qindex


def encode_picture(state: State, picture: Picture, *, key_frame: bool, qindex: int,
                   speed: str = "good") -> EncodedFrame:
    """One pure encode step (no policy): ``state`` is left unchanged."""
    data, new_state, planes = _encode_frame(state, picture.y, picture.u, picture.v,
                                            key_frame=key_frame, qindex=qindex, speed=speed)
    return EncodedFrame(bytes(data), new_state, Picture(*planes), qindex, key_frame)


@dataclass(frozen=True)
class ConstantQ:
    """Every frame at ``qindex`` (0 = finest, 127 = coarsest)."""

    qindex: int = 32

    def __post_init__(self) -> None:
        if not 0 <= self.qindex <= MAX_QINDEX:
            raise ValueError(f"qindex {self.qindex} is out of range 0..{MAX_QINDEX}")


@dataclass(frozen=True)
class TargetSsim:
    """Each frame at the coarsest qindex whose luma SSIM is at least ``target``."""

    target: float = 0.99

    def __post_init__(self) -> None:
        if not 0.0 < self.target <= 1.0:
            raise ValueError(f"SSIM target {self.target} is not in (0, 1]")


@dataclass(frozen=True)
class TargetSize:
    """Frame i at the finest qindex whose size is at most ``sizes[i]`` bytes."""

    sizes: tuple[int, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "sizes", tuple(int(s) for s in self.sizes))
        bad = [s for s in self.sizes if s <= 0]
        if bad:
            raise ValueError(f"frame size {bad[0]} is not a positive byte count")


RateMode = ConstantQ | TargetSsim | TargetSize


def _search(trial: Callable[[int], EncodedFrame], ok: Callable[[EncodedFrame], bool],
            prefer_high: bool, lo: int = 0, hi: int = MAX_QINDEX) -> EncodedFrame:
    """Bisection over qindex for the extreme one whose trial is ``ok``.

    ``prefer_high``: the largest ok qindex (``ok`` is assumed to hold below some point, as SSIM
    does); else the smallest (``ok`` holds above some point, as a size bound does). Without
    any ok trial, the qindex that comes closest (``lo`` or ``hi``) is returned.
    """
    best: EncodedFrame | None = None
    while lo <= hi:
        mid = (lo + hi) // 2
        r = trial(mid)
        if ok(r):
            best = r
            if prefer_high:
                lo = mid + 1
            else:
                hi = mid - 1
        elif prefer_high:
            hi = mid - 1
        else:
            lo = mid + 1
    if best is None:
        best = trial(0 if prefer_high else MAX_QINDEX)
    return best


def _walk(trial: Callable[[int], EncodedFrame], ok: Callable[[EncodedFrame], bool],
          prefer_high: bool, start: int) -> EncodedFrame:
    """Refine a pass-1 choice: if ``start`` is ok, try one step the cheaper way (and keep it if
    still ok); otherwise step the safer way until ok holds (or the range ends)."""
    up = 1 if prefer_high else -1
    r = trial(start)
    if ok(r):
        if 0 <= start + up <= MAX_QINDEX and ok(nxt := trial(start + up)):
            return nxt
        return r
    q = start
    while 0 <= q - up <= MAX_QINDEX:
        q -= up
        r = trial(q)
        if ok(r):
            return r
    return r


@dataclass
class Encoder:
    """Encodes a sequence of pictures, keeping the decoder state between frames.

    ``quality`` is a qindex (constant quantizer) or a :data:`RateMode`. ``state`` is the
    state to start from: a fresh one (the default) makes the first frame a key frame; a state
    with references (e.g. another worker's final state) lets the first frame be an inter
    frame predicted from it.
    """

    width: int
    height: int
    quality: int | RateMode = 32
    speed: str = "good"
    state: State = field(default_factory=State)
    kf_dist: int | None = None
    two_pass: bool = False
    frames_encoded: int = field(default=0, init=False)
    _since_key: int = field(default=0, init=False, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.quality, int):
            self.quality = ConstantQ(self.quality)
        if self.speed not in SPEEDS:
            raise ValueError(f"speed {self.speed!r}: expected one of {', '.join(SPEEDS)}")
        if not (0 < self.width < 16384 and 0 < self.height < 16384):
            raise ValueError(f"picture size {self.width}x{self.height} is outside 1..16383")
        if self.kf_dist is not None and self.kf_dist < 1:
            raise ValueError(f"key-frame distance {self.kf_dist} must be at least 1")

    def _needs_key(self) -> bool:
        if self.state.reference("last") is None:
            return True
        if (self.state.width, self.state.height) != (self.width, self.height):
            return True
        return self.kf_dist is not None and self._since_key >= self.kf_dist

    def encode(self, picture: Picture, key_frame: bool | None = None) -> bytes:
        """Encode the next picture and return the frame's bytes."""
        return self.encode_frame(picture, key_frame).data

    def encode_frame(self, picture: Picture, key_frame: bool | None = None) -> EncodedFrame:
        """Encode the next picture; ``key_frame`` None follows the key-frame policy."""
        if (picture.width, picture.height) != (self.width, self.height):
            raise EncodeError(f"frame {self.frames_encoded}: picture is {picture.width}x"
                              f"{picture.height}, the encoder's size is {self.width}x{self.height}")
        key = self._needs_key() if key_frame is None else key_frame
        result = self._choose(picture, key)
        self.state = result.state
        self._since_key = 1 if key else self._since_key + 1
        self.frames_encoded += 1
        return result

    def _choose(self, picture: Picture, key: bool) -> EncodedFrame:
        mode = self.quality
        state = self.state
        cache: dict[tuple[int, str], EncodedFrame] = {}

        def trial_at(speed: str) -> Callable[[int], EncodedFrame]:
            def trial(q: int) -> EncodedFrame:
                if (q, speed) not in cache:
                    cache[q, speed] = encode_picture(state, picture, key_frame=key, qindex=q,
                                                     speed=speed)
                return cache[q, speed]
            return trial

        if isinstance(mode, ConstantQ):
            return trial_at(self.speed)(mode.qindex)
        if isinstance(mode, TargetSsim):
            target = mode.target

            def ok(r: EncodedFrame) -> bool:
                return ssim(picture.y, r.recon.y) >= target
            prefer_high = True
        else:
            i = self.frames_encoded
            if i >= len(mode.sizes):
                raise EncodeError(f"frame {i}: no target size (only {len(mode.sizes)} given)")
            limit = mode.sizes[i]

            def ok(r: EncodedFrame) -> bool:
                return len(r.data) <= limit
            prefer_high = False
        if self.two_pass and self.speed != "rt":
            first = _search(trial_at("rt"), ok, prefer_high)
            best = _walk(trial_at(self.speed), ok, prefer_high, first.qindex)
        else:
            best = _search(trial_at(self.speed), ok, prefer_high)
        return EncodedFrame(best.data, best.state, best.recon, best.qindex, key, len(cache))


@dataclass(frozen=True)
class ReencodeOptions:
    """The rebase's knobs, as mu passes them to ``xc-enc -r`` (see ``pipelines.xcenc``)."""

    # -w: alfalfa's weighted first-frame quantizer, w*kf_q + (1-w)*next_q. None (the default)
    # instead picks the coarsest quantizer whose first frame is within 0.25 dB of the
    # prediction stream's key frame, which keeps the chunk at its independently encoded quality.
    kf_q_weight: float | None = None
    s_ac_qi: int | None = None  # --s-ac-qi: the S phase's quantizer index
    reencode_first_frame: bool = False  # --reencode-first-frame
    fix_prob_tables: bool = False  # --fix-prob-tables
    # excamera's, not alfalfa's: --keep-golden leaves golden alone in the converted first frame,
    # --last-keeps-refs stops the last frame from refreshing all three references, so the
    # chunk's boosted first frame stays a reference for the next chunk, and --choose-refs lets
    # rebased macroblocks pick their best reference. The pipeline's batch mode uses the last two
    # (xcenc.plan.EXCAMERA_CHAIN_FLAGS); --keep-golden measured worse there.
    keep_golden: bool = False
    last_refreshes_all: bool = True
    choose_refs: bool = False
    speed: str = "rt"  # the converted first frame's encoder effort: one of SPEEDS
    # --key-at-cuts: an inter frame that a key frame of equal SSIM undercuts becomes that key
    # frame (``key_frames_at_cuts``).
    key_at_cuts: bool = False
    # --activity-rd: rebased macroblocks' lambda weighted by their activity, for SSIM (as
    # vpxenc's --tune=ssim, which pass 0 ran with and the rebase's new residuals lose).
    activity_rd: bool = False
    # --content-weight: -w moved by how static the chunk's pass 0 says it is (the codec's
    # rebase::content_weight).
    kf_weight_by_content: bool = False
    # --full-key: a first key frame that stays one (a fresh input state, as the batch-start
    # re-key's) is encoded in full by xc's key-frame analysis at its quantizer, not re-quantized
    # with the prediction stream's intra modes (the codec's ReencodeOpts::key_frame_in_full).
    full_key: bool = False
    # --floored-key: pass 0's key frame was floored near the boost (vpxenc --min-q), so the
    # weighted first-frame quantizer runs from 0 (the codec's ReencodeOpts::key_floored).
    key_floored: bool = False
    # --static-key W: a first key frame that stays one (a fresh input state: the batch-start
    # re-key) from a chunk whose pass 0 reads static gets (1 - W) times the next frame's
    # quantizer instead of s_ac_qi: its picture will serve many frames (the codec's
    # ReencodeOpts::static_key_weight). None: s_ac_qi (or the prediction's) as it is.
    static_key_weight: float | None = None
    # --redecide-first: a first frame that is an inter frame in the previous encode (a
    # converted first frame) is decided anew against the input state at ``speed``'s effort
    # and rebased onto it (the codec's ReencodeOpts::redecide_first_frame).
    redecide_first: bool = False
    # --golden-to-altref: the converted first frame copies the input state's golden picture to
    # alt-ref instead of refreshing it (ReencodeOpts::first_frame_golden_to_altref), so the
    # chunk hands on three distinct references.
    golden_to_altref: bool = False
    # --redecide-rest SPEED: every inter frame after the first is decided anew by a full encode
    # at SPEED onto the state the frames before it reach, then rebased onto it (the codec's
    # ReencodeOpts::redecide_later_frames). None: pass 0's decisions are kept.
    redecide_rest: str | None = None
    # --seeded-first: a first frame that is an inter frame in the previous encode is decided
    # anew against the input state cheaply, among candidates around the previous encode's
    # own decision, and written as decided (the codec's ReencodeOpts::seeded_first_frame).
    seeded_first: bool = False


@dataclass(frozen=True)
class ReencodedChunk:
    frames: list[bytes]
    state: State  # the decoder state after the last frame
    input_state_hash: int  # content hash of the state the chunk decodes from


def reencode_chunk(input_state: State, pred_frames: Sequence[bytes], pred_state: State | None,
                   pictures: Sequence[Picture],
                   opts: ReencodeOptions | None = None) -> ReencodedChunk:
    """Re-encode ``pictures`` (a chunk) to decode from ``input_state``.

    ``pred_frames`` is the chunk's previous encode, decodable from ``pred_state`` (None: it
    starts with a key frame); its prediction decisions are kept and the residuals recomputed
    against ``input_state``. Runs with the GIL released.
    """
    from excamera import _xc

    o = opts or ReencodeOptions()
    frames, state, input_hash = _xc.reencode_chunk(
        input_state, [bytes(f) for f in pred_frames], pred_state,
        [(p.y, p.u, p.v) for p in pictures], kf_q_weight=o.kf_q_weight, s_ac_qi=o.s_ac_qi,
        reencode_first_frame=o.reencode_first_frame, fix_prob_tables=o.fix_prob_tables,
        speed=o.speed, keep_golden=o.keep_golden, last_refreshes_all=o.last_refreshes_all,
        choose_refs=o.choose_refs, activity_rd=o.activity_rd,
        kf_weight_by_content=o.kf_weight_by_content, key_frame_in_full=o.full_key,
        key_floored=o.key_floored, static_key_weight=o.static_key_weight,
        redecide_first_frame=o.redecide_first, golden_to_altref=o.golden_to_altref,
        redecide_later=o.redecide_rest, seeded_first_frame=o.seeded_first)
    chunk = ReencodedChunk([bytes(f) for f in frames], state, int(input_hash))
    return key_frames_at_cuts(chunk, input_state, pictures, o) if o.key_at_cuts else chunk


# An inter frame this many times the median size of its chunk's other inter frames may be a
# scene cut: a key frame is tried for it.
CUT_SIZE_RATIO = 2.0


def _cut_candidate(frames: Sequence[bytes], start: int) -> int | None:
    """The first shown inter frame at or after ``start`` (never frame 0, the chunk's join)
    much larger than the chunk's typical inter frame."""
    inter = [i for i, f in enumerate(frames) if i > 0 and f[0] & 1 and (f[0] >> 4) & 1]
    for i in inter:
        others = sorted(len(frames[j]) for j in inter if j != i)
        if i >= start and len(others) >= 2 and \
                len(frames[i]) > CUT_SIZE_RATIO * others[len(others) // 2]:
            return i
    return None


def _equal_quality_key(state: State, source: Picture, floor: float) -> EncodedFrame | None:
    """The coarsest key frame of ``source`` whose luma SSIM is at least ``floor`` (None if
    even the finest is below it)."""
    key = _search(lambda q: encode_picture(state, source, key_frame=True, qindex=q),
                  lambda r: ssim(r.recon.y, source.y) >= floor, prefer_high=True)
    return key if ssim(key.recon.y, source.y) >= floor else None


def key_frames_at_cuts(chunk: ReencodedChunk, input_state: State, pictures: Sequence[Picture],
                       opts: ReencodeOptions) -> ReencodedChunk:
    """A hard cut inside a chunk costs no more than a key frame would.

    The prediction stream's encoder (vpxenc in pass 0) need not put a key frame at a cut, and
    an inter frame made mostly of intra macroblocks can cost more than a key frame of the same
    quality. For each frame much larger than the chunk's others (``CUT_SIZE_RATIO``), the
    coarsest key frame of the picture whose luma SSIM is at least the inter frame's is
    encoded; if it is smaller it replaces the frame, and the rest of the chunk is rebased onto
    it (keeping its decisions).
    """
    from excamera import _xc
    from excamera.xc.codec import Decoder

    frames, state, start = list(chunk.frames), chunk.state, 1
    while (i := _cut_candidate(frames, start)) is not None:
        dec = Decoder(input_state)
        shown = 0
        for f in frames[:i]:
            shown += dec.decode(f) is not None
        before = dec.state
        recon = dec.decode(frames[i])
        after = dec.state
        source = pictures[shown]
        key = _equal_quality_key(before, source, ssim(recon.y, source.y))
        start = i + 1
        if key is None or len(key.data) >= len(frames[i]):
            continue
        tail, state = frames[i + 1:], key.state
        if tail:
            tail, state, _ = _xc.reencode_chunk(
                key.state, tail, after, [(p.y, p.u, p.v) for p in pictures[shown + 1:]],
                kf_q_weight=opts.kf_q_weight, s_ac_qi=None, reencode_first_frame=False,
                fix_prob_tables=opts.fix_prob_tables, speed=opts.speed,
                keep_golden=opts.keep_golden, last_refreshes_all=opts.last_refreshes_all,
                choose_refs=opts.choose_refs, activity_rd=opts.activity_rd)
        frames = frames[:i] + [key.data] + [bytes(f) for f in tail]
    return ReencodedChunk(frames, state, chunk.input_state_hash)
