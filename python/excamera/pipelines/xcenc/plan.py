"""The xcenc job's plan: which passes each worker runs, what it needs and sends, and the command
lines it runs. Pure: no I/O, no asyncio (the specification is the package docstring)."""

from __future__ import annotations

from dataclasses import dataclass, field

from .handoff import CODECS as HANDOFF_CODECS

# mu's pass-0 vpxenc settings, with --cq-level=<Y> appended (-q only silences progress output).
VPXENC_SETTINGS = [
    "--ivf", "-q", "--codec=vp8", "--good", "--cpu-used=0", "--end-usage=cq", "--min-q=0",
    "--max-q=63", "--buf-initial-sz=10000", "--buf-optimal-sz=20000", "--buf-sz=40000",
    "--undershoot-pct=100", "--passes=2", "--auto-alt-ref=1", "--threads=1", "--token-parts=0",
    "--tune=ssim", "--target-bitrate=4294967295",
]
CHAINS = ("excamera", "mu")
PASS0_ENCODERS = ("vpxenc", "xc")

# The quality scale every pass-0 encoder shares is vpxenc's --cq-level, 0..63. A VP8 frame header
# carries a quantizer index, 0..127; libvpx maps level L to index CQ_LEVEL_QINDEX[L] (its q_trans
# table: with --min-q=L --max-q=L every frame carries that index, and in mu's constrained-quality
# mode so does every plain inter frame). Transcribed, and checked against vpxenc's headers for
# all 64 levels by tests/test_quality_scale.py.
CQ_LEVEL_QINDEX = (
    0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 12, 13, 15, 17, 18, 19,
    20, 21, 23, 24, 25, 26, 27, 28, 29, 30, 31, 33, 35, 37, 39, 41,
    43, 45, 47, 49, 51, 53, 55, 57, 59, 61, 64, 67, 70, 73, 76, 79,
    82, 85, 88, 91, 94, 97, 100, 103, 106, 109, 112, 115, 118, 121, 124, 127,
)
MAX_CQ_LEVEL = len(CQ_LEVEL_QINDEX) - 1
TOOL_MODES = ("worker", "subprocess")
# -q: pass 1's effort for the converted first frame, and the re-decide pass's. Good was on the
# Pareto front of pipeline time against SSIM BD-rate (bench/pass1-effort.md: 0.65-0.67 of
# Best's pipeline CPU for +0.02..+0.08%; Realtime +5.8..+7.4%). Since the re-decide pass
# decides against three distinct references, SPLITMV on golden and alt-ref pays: good-refs
# (Good's SPLITMV rule on every reference) moves ExCamera[6,16]'s SSIM / PSNR-Y BD-rate
# -0.56% / -0.44% on bigbuckbunny and -1.24% / -0.75% on carphone, nearly good-split's gain
# (-0.73% / -0.52% on bigbuckbunny), for 1.36x Good's encode CPU (Best: 2.6x)
# (bench/compression-ideas.md, seventh session).
PASS1_EFFORT = "good-refs"
# The excamera chain's flags besides the effort (``XcencParams.pass_flags``).
_CHAIN_CHOICES = ["--last-keeps-refs", "--choose-refs", "--key-at-cuts", "--activity-rd",
                  "--content-weight"]
EXCAMERA_CHAIN_FLAGS = ["-q", PASS1_EFFORT, *_CHAIN_CHOICES]
# -q of pass 1 in a chunk that runs the re-decide pass (``XcencParams.redecide``): its converted
# first frame is decided again in pass 2, so pass 1 only has to give its successor's re-decide
# pass a state near the chain's. Realtime there instead of Good: bigbuckbunny +13.9% / +5.2% ->
# +14.0% / +5.4%, carphone -3.1% / -2.9% -> -2.9% / -2.6% (SSIM / PSNR-Y BD-rate), for pass 1's
# CPU on bbb 640x272 1.56 -> 0.75 s of the pipeline's 7.6 (bench/compression-ideas.md).
REDECIDE_PASS1_EFFORT = "rt"
# With ``XcencParams.redecide``, the passes that decide on a state near the chain's (the
# re-decide pass, and pass 1 where it is the chunk's final pass: the second chunk of a batch)
# also decide every later frame of the chunk anew at this effort (xc-enc --redecide-rest)
# instead of rebasing pass 0's decisions, made against pass 0's own key frame. SSIM / PSNR-Y
# BD-rate bigbuckbunny +11.7% / +3.9% -> +8.1% / +0.7%, carphone -4.6% / -3.5% -> -3.8% /
# -3.7%; Good instead +9.5% / +2.2% and -1.5% / -0.6% (the re-decide pass alone), Realtime
# +20.8% / +10.9% (bench/compression-ideas.md, eighth session).
REDECIDE_REST_EFFORT = "good-refs"
# The serial step (pass 3 of a four-pass chunk) decides its first frame again on the exact
# state, cheaply, around the re-decide pass's decisions (xc-enc --seeded-first): SSIM / PSNR-Y
# BD-rate bigbuckbunny +6.7% / +0.3% -> +4.6% / -1.3%, carphone -4.3% / -3.7% -> -6.9% /
# -5.6%, bus -10.6% / -13.3% either way, park_joy unchanged. The serial step's CPU
# (bench/rebase.py, of vpxenc's pass 0): 0.099 -> 0.142 at 1280x720 and 0.101 -> 0.148 at
# 640x272 (rebase-results.json), under issue 12's 0.15 since its split search runs only where
# a split can pay (bench/compression-ideas.md, ninth and tenth sessions).
SERIAL_SEEDED_FIRST = True
# With ``XcencParams.pass0_key_floor``, pass 0's key frame is at no less than this fraction of
# the level's quantizer index (vpxenc --min-q): near the quantizer the chain gives a chunk's
# first frame (0.25 of it at -w 0.75), where vpxenc's own two-pass key frame sits at about 0.
# Measured 0.10, 0.15, 0.20, 0.25, 0.30 (bench/compression-ideas.md).
PASS0_KEY_FLOOR = 0.2
# The batch-start re-key of a chunk whose pass 0 reads static (xc-enc --static-key; the
# codec's stillness::STATIC_KEY_GATE) is at (1 - STATIC_KEY_WEIGHT) of the level's quantizer
# instead of (1 - kf_weight): a static opening's key frame serves more than its chunk (with
# ``XcencParams.redecide`` it also stays alt-ref through the next chunk).
# bigbuckbunny's SSIM / PSNR-Y BD-rate +14.0% / +5.4% -> +13.7% / +5.3% at 0.82 (0.79 before
# the re-decide pass; 0.75..0.95 measured again after it), +8.1% / +0.7% -> +7.6% / +1.0% at
# 0.86 with REDECIDE_REST_EFFORT (0.82..0.90 measured); carphone, bus and park_joy read busy
# and are unchanged (bench/compression-ideas.md).
STATIC_KEY_WEIGHT = 0.86
# ``XcencParams.redecide_levels``: how many parallel re-decide passes a chunk runs (at most;
# ``XcencParams._levels``), each against its predecessor's output of the level before, a state
# nearer the chain's at every level. 1: the re-decide pass alone. 2: pass 2 re-decides the
# first frame, pass 3 every frame (against the predecessor's pass 2). 3: pass 2 re-decides the
# first frame at Realtime, pass 3 the first frame at good-refs (against the predecessor's pass
# 2), pass 4 every frame (against its pass 3). SSIM / PSNR-Y BD-rate at levels 1, 2, 3:
# bigbuckbunny +6.7% / +0.3%, +5.2% / -0.9%, +4.4% / -1.7%; carphone -4.3% / -3.7%, -5.8% /
# -4.8%, -6.2% / -5.2% (bus and park_joy, without a chunk at position 3, unchanged); for
# 1.16-1.22x (2) and 1.27x (3) the pipeline's CPU on bbb 640x272, above issue 12's bar at
# main's 2.45x (bench/compression-ideas.md, ninth session). Measured and not kept: a second
# level re-deciding the first frame alone (+5.9% / -0.4%, -6.4% / -5.3%, 1.11x). Those are
# without SERIAL_SEEDED_FIRST; with it, levels 2 and 3 give bigbuckbunny +4.1% / -1.9% and
# +3.9% / -2.1%, carphone -7.7% / -6.2% and -7.8% / -6.6% (level 1: +4.6% / -1.3%, -6.9% /
# -5.6%; tenth session).
MAX_REDECIDE_LEVELS = 3
# The levels ``excamera encode`` runs.
REDECIDE_LEVELS = 1


class PlanError(ValueError):
    """Options that do not make a runnable plan (named in the message)."""


def cq_level_qindex(level: int) -> int:
    """The quantizer index (0..127) of vpxenc's ``--cq-level`` ``level`` (0..63)."""
    if not 0 <= level <= MAX_CQ_LEVEL:
        raise PlanError(f"quality {level}: vpxenc's --cq-level takes 0..{MAX_CQ_LEVEL}")
    return CQ_LEVEL_QINDEX[level]


def key_floor_level(level: int, floor: float = PASS0_KEY_FLOOR) -> int:
    """The lowest level (vpxenc's --min-q) whose quantizer index is at least ``floor`` times
    ``level``'s."""
    want = floor * cq_level_qindex(level)
    return next(v for v, q in enumerate(CQ_LEVEL_QINDEX) if q >= want)


def vpxenc_pass0_settings(level: int, key_floor: bool) -> list[str]:
    """vpxenc's pass-0 options at ``level`` (without ``-o`` and the input): mu's settings, with
    the key frames floored (``key_floor_level``) as ``excamera encode`` runs them."""
    settings = list(VPXENC_SETTINGS)
    if key_floor:
        settings = [f"--min-q={key_floor_level(level)}" if s == "--min-q=0" else s
                    for s in settings]
    return [*settings, f"--cq-level={level}"]


@dataclass(frozen=True)
class PassPlan:
    """Passes per phase (mu's ``w,x,y,z``); pass indices start at 0 (the vpxenc pass)."""

    phases: tuple[int, int, int, int] = (1, 0, 4, 2)

    @classmethod
    def parse(cls, text: str | int) -> PassPlan:
        s = str(text).replace(" ", "")
        try:
            parts = [int(v) for v in s.split(",")]
        except ValueError:
            raise PlanError(f"-p {text!r}: expected an integer or w,x,y,z") from None
        if len(parts) == 1:
            n = parts[0]
            if n < 1:
                raise PlanError(f"-p {n}: at least 1 pass (pass 0)")
            if n == 1:
                return cls((1, 0, 0, 0))
            if n == 2:
                return cls((1, 0, 1, 0))
            if n == 3:
                return cls((1, 0, 1, 1))
            return cls((1, 0, n - 3, 2))
        if len(parts) != 4:
            raise PlanError(f"-p {text!r}: expected an integer or four numbers w,x,y,z")
        if parts[0] < 1 or min(parts) < 0:
            raise PlanError(f"-p {text!r}: phase 1 (pass 0) needs at least 1 pass, none < 0")
        return cls((parts[0], parts[1], parts[2], parts[3]))

    @property
    def total(self) -> int:
        return sum(self.phases)

    def phase(self, p: int) -> int:
        """1..4: which phase pass ``p`` belongs to."""
        edge = 0
        for i, n in enumerate(self.phases):
            edge += n
            if p < edge:
                return i + 1
        raise PlanError(f"pass {p} is beyond the plan's {self.total} passes")

    def flags(self, p: int, s_ac_qi: int) -> list[str]:
        """The extra xc-enc flags of re-encode pass ``p`` (p >= 1 and not in phase 1)."""
        w, x, y, _ = self.phases
        phase = self.phase(p)
        out: list[str] = []
        if phase == 3:
            out += ["--s-ac-qi", str(s_ac_qi)]
        elif phase == 4 and p == self.total - 1:
            out.append("--fix-prob-tables")
        if y >= 1 and p == w + x + 1:
            out.append("--reencode-first-frame")
        return out


@dataclass(frozen=True)
class Need:
    """What re-encode pass ``p`` needs from the predecessor: -I state tag and -S state tag."""

    inp: int
    prev: int | None


@dataclass(frozen=True)
class WorkerPlan:
    passes: int
    needs: dict[int, Need]  # pass -> states it rebases with
    out_tags: dict[int, int]  # pass -> tag its final.state carries when sent
    send_tags: frozenset[int]  # tags the successor needs
    # The successor ends on one of this worker's earlier states, so its join is exact only if
    # this worker's states converge (ends where it was before).
    successor_needs_convergence: bool
    rekey_pass: int | None = None  # the pass that re-encodes the key frame (mild_batch_keys)


#: How a chunk's final output meets its predecessor's (``XcencParams.join``).
JOIN_KEY = "key frame"  # it starts with a key frame: decodes whatever came before
JOIN_FINAL = "final"  # rebased onto the predecessor's final state: exact by construction
JOIN_EARLIER = "earlier"  # onto an earlier state: exact only if the predecessor converged


@dataclass(frozen=True)
class Join:
    """The join of chunk ``k - 1`` and chunk ``k`` (worker numbers): ``kind`` is one of the
    ``JOIN_*``, ``inp`` the predecessor's state tag that chunk k's final pass rebased onto and
    ``pred_final`` the tag of the state the predecessor ended on (None for a key frame)."""

    k: int
    kind: str
    inp: int | None = None
    pred_final: int | None = None


@dataclass(frozen=True)
class XcencParams:
    vid_name: str
    n_parts: int
    offset: int = 0
    plan: PassPlan = field(default_factory=PassPlan)
    s_ac_qi: int = 127
    # The quality, vpxenc's --cq-level (0..63) whichever encoder runs pass 0 (mu's -Y); xc-enc
    # runs at its quantizer index (``pass0_argv``).
    y_ac_qi: int = 30
    # Per-chunk levels on the same scale, one per worker, instead of y_ac_qi for all (rate
    # control by target bitrate, ``pipelines/encode/ratecontrol.py``).
    levels: tuple[int, ...] | None = None
    # Batch mode's excamera chain: each batch's first chunk re-encodes its key frame at the
    # quantizer the rebased chunks give their first frames, instead of pass 0's (vpxenc's
    # two-pass key frames sit at quantizer 0), and rebases the rest of the chunk onto it: a
    # second pass from a fresh state that needs nothing from a neighbour, so the batch's
    # serial chain keeps its hops. On carphone ExCamera[6,16]'s BD-rate goes from +12.0% to
    # +9.4% (SSIM) and +14.1% to +9.6% (PSNR-Y) with the key frame at frame 96 alone, to +4.9%
    # and +3.6% with frame 0's too (bigbuckbunny: +19.7% either way, PSNR-Y +11.7% -> +8.5%):
    # every chunk's boosted first frame refreshes the golden picture, so a key frame at 0 is
    # bits a serial encoder spreads over many more frames.
    # ``excamera encode`` turns it on; the xcenc command keeps mu's batch mode.
    mild_batch_keys: bool = False
    # Pass 0 (vpxenc) floors its key frames' quantizer at ``PASS0_KEY_FLOOR`` of the level's
    # (--min-q; its plain frames sit at the level itself, so only key frames move) and the
    # excamera chain's re-encodes know it (xc-enc --floored-key: the weighted first-frame
    # quantizer runs from 0, not from pass 0's key frame's). vpxenc's key frame at about 0
    # is a reference much better than any the chain gives a chunk, so pass 0 decided the
    # chunk's later frames against a picture the rebase replaces by a coarser one; a floored
    # key frame is nearer the final stream's. SSIM / PSNR-Y BD-rate: carphone +1.4% / +2.0%
    # -> -0.3% / -1.0%, bigbuckbunny +17.7% / +7.5% -> +16.7% / +6.8%. ``excamera encode``
    # turns it on (pass 0 by vpxenc, excamera chain); the xcenc command keeps mu's pass 0.
    pass0_key_floor: bool = False
    # The excamera chain's re-decide pass: a chunk at position 2 or later in its batch runs
    # four passes, the third (pass 2, parallel: it waits only for its predecessor's pass 1)
    # deciding its converted first frame's modes and vectors anew (xc-enc --redecide-first, at
    # pass 1's effort) against the predecessor's pass-1 output, a state much nearer the
    # chain's than the pass-0 one pass 1 decided against, and the fourth rebasing that onto
    # the chain (the serial step, unchanged). Every converted first frame also copies the old
    # golden to alt-ref (--golden-to-altref), so the decisions have three distinct references
    # as vpxenc's golden frames do. SSIM / PSNR-Y BD-rate: bigbuckbunny +15.6% / +6.2% ->
    # +13.9% / +5.2%, carphone -1.2% / -1.8% -> -3.1% / -2.9% (bench/compression-ideas.md,
    # sixth session; either half alone gains nothing). ``excamera encode`` turns it on.
    redecide: bool = False
    # Parallel re-decide passes (1..MAX_REDECIDE_LEVELS; more than 1 needs ``redecide``): a
    # chunk at position e >= 2 of its batch runs min(redecide_levels, e - 1) of them, passes 2
    # onwards, pass j deciding against its predecessor's pass j - 1 (handed on under tag
    # kf_dist + j - 2 from pass 2 on), then the serial rebase. A chunk near the batch start has
    # fewer levels to lean on: the chunk at position 2 decides on its predecessor's final state
    # already in its pass 2, the one at position 3 on its predecessor's last re-decide pass in
    # its pass 3. ``MAX_REDECIDE_LEVELS`` says what each level re-decides, and the figures.
    redecide_levels: int = 1
    # xc-enc -w (mu ran 0.75); None: xc-enc matches the prediction's key-frame quality.
    kf_weight: float | None = 0.75
    kf_dist: int | None = None
    pass0: str = "vpxenc"  # or "xc": xc-enc -y Y
    # also store handed-off states (on with --retries and with straggler duplicates)
    handoff_storage: bool = False
    # How a handed-off state is packed (``handoff.CODECS``): "none" (the default: on one
    # machine or a fast network the bytes cost less than compressing them) or "zlib".
    handoff_codec: str = "none"
    # On one machine (the local backend), an uncompressed state goes through a file in the
    # workers' shared directory and the relay carries only its envelope (length, SHA-256):
    # ``handoff.FLAG_FILE``. Other backends always use the relay; False: the relay on one
    # machine too.
    handoff_local: bool = True
    cpu_slots: int | None = None  # at most this many encodes at once (None: no limit)
    # Each worker decodes its final output from the state it was encoded against and reports
    # PSNR/SSIM sums against its chunk and the states the decode starts and ends on
    # (``excamera encode``'s quality figures and join check; ops ``xcenc_measure``).
    measure: bool = False
    # How batch mode's re-encodes link chunks: "excamera" (the default) keeps references
    # across chunk joins and lets rebased macroblocks choose among them, and gives the
    # converted first frame the encoder's Good effort; "mu" runs xc-enc as mu did. See
    # ``pass_flags``.
    chain: str = "excamera"
    # Where the xc tools (xc-enc, xc-dump, comp-states) run: "worker" in the worker's own
    # interpreter (an ``xcenc_tool`` operation, same command lines), or "subprocess", a new
    # Python per step as mu ran its binaries. A Python start-up costs about 0.2 s, which on
    # small chunks is more than the rebase itself and adds up along the serial pass.
    tools: str = "worker"

    def __post_init__(self) -> None:
        if self.n_parts < 1:
            raise PlanError("-n must be at least 1")
        if self.offset < 0:
            raise PlanError("-o must be >= 0")
        if self.cpu_slots is not None and self.cpu_slots < 1:
            raise PlanError(f"cpu_slots {self.cpu_slots}: at least 1 (None: no limit)")
        if self.kf_dist is not None:
            if self.kf_dist < 1:
                raise PlanError("-K must be at least 1")
            if self.plan.total == 2:
                raise PlanError("batch mode (-K) needs -p 1 or at least 3 passes")
        if self.pass0 not in PASS0_ENCODERS:
            raise PlanError(f"pass 0 encoder {self.pass0!r}: expected vpxenc or xc")
        if self.tools not in TOOL_MODES:
            raise PlanError(f"tools {self.tools!r}: expected one of {', '.join(TOOL_MODES)}")
        if self.handoff_codec not in HANDOFF_CODECS:
            raise PlanError(f"hand-off codec {self.handoff_codec!r}: expected one of "
                            f"{', '.join(HANDOFF_CODECS)}")
        if self.chain not in CHAINS:
            raise PlanError(f"chain {self.chain!r}: expected one of {', '.join(CHAINS)}")
        if self.pass0_key_floor and (self.pass0 != "vpxenc" or self.chain != "excamera"
                                     or self.kf_dist is None or self.plan.total < 3):
            raise PlanError("a floored pass-0 key frame needs pass 0 by vpxenc and batch "
                            "mode's excamera chain with re-encodes (at least 3 passes)")
        if self.redecide and (self.chain != "excamera" or self.kf_dist is None
                              or self.plan.total < 3):
            raise PlanError("the re-decide pass needs batch mode's excamera chain with "
                            "re-encodes (at least 3 passes)")
        if not 1 <= self.redecide_levels <= MAX_REDECIDE_LEVELS or (
                self.redecide_levels > 1 and not self.redecide):
            raise PlanError(f"{self.redecide_levels} re-decide levels: expected 1.."
                            f"{MAX_REDECIDE_LEVELS}, more than 1 with the re-decide pass")
        if self.kf_weight is not None and not 0.0 <= self.kf_weight <= 1.0:
            raise PlanError(f"-w {self.kf_weight}: the key-frame weight must be in 0..1")
        if not 0 <= self.s_ac_qi <= 127:
            raise PlanError(f"-S {self.s_ac_qi}: a quantizer index 0..127")
        if not 0 <= self.y_ac_qi <= MAX_CQ_LEVEL:
            raise PlanError(f"-Y {self.y_ac_qi}: the quality is vpxenc's --cq-level, "
                            f"0..{MAX_CQ_LEVEL}")
        if self.levels is not None and (len(self.levels) != self.n_parts or not all(
                0 <= v <= MAX_CQ_LEVEL for v in self.levels)):
            raise PlanError(f"per-chunk levels: expected {self.n_parts} levels in "
                            f"0..{MAX_CQ_LEVEL}")

    def chunk(self, k: int) -> str:
        return f"{k + self.offset:08d}"

    def input_key(self, k: int) -> str:
        return f"{self.vid_name}/{self.chunk(k)}.y4m"

    def output_key(self, k: int) -> str:
        return f"{self.vid_name}/out/{self.chunk(k)}.ivf"

    def comp_key(self, k: int) -> str:
        return f"{self.vid_name}/comp_txt/{self.chunk(k)}.txt"

    def handoff_key(self, k: int, tag: int) -> str:
        return f"{self.vid_name}/handoff/{self.chunk(k)}.{tag}.handoff"

    def eff(self, k: int) -> int:
        return k % self.kf_dist if self.kf_dist is not None else k

    def rekeys(self, k: int) -> bool:
        """Whether chunk ``k`` re-encodes its batch-start key frame (``mild_batch_keys``),
        the clip's first included."""
        return (self.mild_batch_keys and self.kf_dist is not None and self.plan.total >= 3
                and self.chain == "excamera" and self.eff(k) == 0)

    def rekey_argv(self, k: int) -> list[str]:
        """The batch-start key frame at (1 - w) times the chunk's plain quantizer (what ``-w``
        gives a rebased chunk's first frame, from pass 0's key frame at about 0 or, with
        ``pass0_key_floor``, from 0 by construction), the rest of the chunk rebased onto it.
        ``--full-key``: the key frame is xc's own key-frame encode at that quantizer
        (activity-weighted, with ``--activity-rd``), not vpxenc's modes re-quantized: SSIM
        BD-rate -0.9% on bigbuckbunny, -3.1% on carphone. A per-chunk content weight here
        measured no better (bench/compression-ideas.md). With ``pass0_key_floor`` (the
        static measure was calibrated on floored pass-0 key frames), ``--static-key``: a chunk
        whose pass 0 reads static gets ``STATIC_KEY_WEIGHT`` instead of ``w``, chosen by the
        re-key itself from its pass 0, which the plan does not see."""
        w = 0.75 if self.kf_weight is None else self.kf_weight
        q = round((1 - w) * cq_level_qindex(self.level(k)))
        static = (["--static-key", f"{STATIC_KEY_WEIGHT:g}", "--floored-key"]
                  if self.pass0_key_floor else [])
        return ["xc-enc", "-r", "-I", "fresh.state", "-p", "prev.ivf", "--s-ac-qi", str(q),
                "--last-keeps-refs", "--activity-rd", "--full-key", *static, "-i", "y4m", "-O",
                "final.state", "-o", "output.ivf", "input.y4m"]

    def _passes(self, k: int) -> int:
        total = self.plan.total
        if self.kf_dist is None:
            return min(total, k + 1)
        if self.rekeys(k):
            return 2
        if total == 1:
            return 1
        if self._levels(k):
            return 3 + self._levels(k)
        return min(3, self.eff(k) + 1)

    def _levels(self, k: int) -> int:
        """Chunk ``k``'s re-decide passes: level j needs a predecessor that ran level j - 1
        (the chunk at position 2 has one: its predecessor's pass 1 is final already)."""
        if not self.redecide or self.rekeys(k) or self.plan.total == 1 or self.eff(k) < 2:
            return 0
        return min(self.redecide_levels, self.eff(k) - 1)

    def _pass_tag(self, j: int) -> int:
        """The hand-off tag of a chunk's pass-``j`` output that its successor's re-decide pass
        j + 1 decides against: pass 0 and pass 1 as themselves (the chunk at position 1's pass 1
        is final and carries 1, its position), a re-decide pass j >= 2 ``kf_dist + j - 2``,
        above every position in a batch, which tags a chunk's final state."""
        assert self.kf_dist is not None
        return j if j < 2 else self.kf_dist + j - 2

    def _needs(self, k: int) -> dict[int, Need]:
        if self.rekeys(k):
            return {}
        n = self._passes(k)
        w = self.plan.phases[0]
        if self.kf_dist is None:
            # pass p rebases onto pred's pass p-1; -S is pred's pass p-2 when prev.ivf was
            # itself a rebase (pass 0..w-1 outputs start with key frames).
            return {p: Need(p - 1, p - 2 if p - 1 >= w else None) for p in range(w, n)}
        e = self.eff(k)
        needs: dict[int, Need] = {}
        if n >= 2:
            needs[1] = Need(0, None)
        levels = self._levels(k)
        if levels:
            # Re-decide pass j onto the predecessor's pass j - 1, then the chain's state; -S
            # is what the chunk's own previous pass decided against.
            for j in range(2, levels + 2):
                needs[j] = Need(self._pass_tag(j - 1), self._pass_tag(j - 2))
            needs[levels + 2] = Need(e - 1, self._pass_tag(levels))
        elif n >= 3:
            needs[2] = Need(e - 1, 0)
        return needs

    def _out_tags(self, k: int) -> dict[int, int]:
        if self.rekeys(k):
            return {1: 0}  # the re-keyed chunk's state is what its batch starts from
        n = self._passes(k)
        if self.kf_dist is None:
            return {p: p for p in range(n)}
        e = self.eff(k)
        tags = {0: 0}
        if self.redecide and n >= 2:
            tags[1] = 1  # pass 1's output: what the successor's re-decide pass decides against
        # What the successor's re-decide passes from its pass 3 on decide against (its levels
        # are at most one more than this chunk's).
        for j in range(2, (self._levels(k + 1) if k + 1 < self.n_parts else 0) + 1):
            tags[j] = self._pass_tag(j)
        if n >= 2:
            tags[n - 1] = e  # the final pass carries the chunk's position in its batch
        return tags

    def pass_flags(self, n: int, k: int | None = None) -> list[str]:
        """xc-enc's phase flags for re-encode pass ``n``.

        In batch mode both re-encodes are plain rebases: pass 2's output is the final stream and
        a rebase keeps the first frame's quantizer, so an S-phase first frame (``--s-ac-qi``,
        127 by default) would end up in the output at the coarsest quantizer. The wavefront keeps
        mu's phases.

        Batch mode's ``excamera`` chain adds ``EXCAMERA_CHAIN_FLAGS``:

        - ``-q good-refs`` (``PASS1_EFFORT``): the converted first frame (pass 1, in parallel)
          is encoded at the encoder's Good effort with SPLITMV on every reference. At ``-w
          0.75`` it is a boosted frame carrying a quarter of the chunk's bits, and realtime
          effort wasted them (+5.8% and +7.4% SSIM BD-rate on bbb at 640x272 and 1280x720
          against Best); Good was within 0.1% of Best for 0.65-0.67 of its pipeline CPU time
          (``bench/pass1_effort.py``), and good-refs gains on Good since the re-decide pass.
        - ``--last-keeps-refs``: a chunk's last frame no longer refreshes all three
          references, so the next chunk's first frame can still predict from this chunk's
          boosted first frame (golden and alt-ref), as a serial encoder's frames use a golden.
        - ``--choose-refs``: pass 2 rebases pass 1's decisions, made against the predecessor's
          pass-0 state, onto its final state, whose golden and alt-ref pictures differ; each
          macroblock may take whichever reference predicts it best with its own vectors (not
          in the serial rebase of a re-decided chunk, whose decisions are all xc's).
        - ``--key-at-cuts``: vpxenc's pass 0 need not put a key frame at a scene cut inside a
          chunk, and an inter frame of intra macroblocks can cost more than a key frame of the
          same quality; such a frame becomes a key frame when that is smaller
          (tests/test_scene_cut.py). Only frames over twice the chunk's median are tried:
          none on carphone.
        - ``--activity-rd``: a rebase recomputes every residual, and vpxenc's ``--tune=ssim``
          in pass 0 (its activity masking) is lost with them; this weights each rebased
          macroblock's lambda by its activity instead (flat ones keep more residual). SSIM
          BD-rate -3.4% on carphone, -1.4% on bigbuckbunny, PSNR-Y unchanged (+0.0%, +0.1%).
        - ``--content-weight``: the converted first frame's ``-w`` moves with how static the
          chunk's pass 0 says it is (``rebase::content_weight``), a lower quantizer for a
          static chunk. With the flag above, SSIM BD-rate carphone +2.4% -> +1.4%,
          bigbuckbunny +18.3% -> +17.7%; PSNR-Y +4.7% -> +2.0%, +8.9% -> +7.5%.

        With ``redecide``, every pass adds ``--golden-to-altref``; in chunk ``k``, when it runs
        four passes, pass 1 is at ``REDECIDE_PASS1_EFFORT`` and pass 2 adds ``--redecide-first``
        and ``--redecide-rest``; when pass 1 is its final pass (the second chunk of a batch),
        pass 1 adds ``--redecide-rest`` (``k`` None: the plain chain's flags). With more
        ``redecide_levels``, passes 2 onwards re-decide as ``MAX_REDECIDE_LEVELS`` says, and
        the serial rebase follows them.

        Measured on carphone (120 frames, ExCamera[6,16], cq 12..44, SSIM BD-rate against one
        vpxenc run, with ``-q best``): mu's chain +32.1%, these three +12.2% (+12.0% after the
        encoder's SPLITMV work); without ``--last-keeps-refs`` and ``--choose-refs`` (best
        effort alone) +32.9%; with realtime effort +21.7%. With ``mild_batch_keys`` (the key
        frame at frame 96 re-encoded at -w's quantizer rather than vpxenc's 0) +9.4%, PSNR-Y
        +9.6%; with frame 0's too +4.9%, PSNR-Y +3.6%.
        """
        weight = [] if self.kf_weight is None else ["-w", f"{self.kf_weight:g}"]
        if self.kf_dist is not None:
            floored = ["--floored-key"] if self.pass0_key_floor else []
            redecide = ["--golden-to-altref"] if self.redecide else []
            effort = PASS1_EFFORT
            choices = _CHAIN_CHOICES
            levels = 0 if k is None else self._levels(k)
            every = ["--redecide-first", "--redecide-rest", REDECIDE_REST_EFFORT]
            if levels:
                if n == 1:
                    effort = REDECIDE_PASS1_EFFORT
                elif n == levels + 1:  # the last re-decide pass decides every frame
                    redecide += every
                elif n <= levels:
                    # An earlier level decides the first frame alone: the successor's proxy
                    # needs its first frame decided on a near state, and this chunk's later
                    # frames are decided again in the last level (``MAX_REDECIDE_LEVELS``).
                    # The first of two such levels, the farthest proxy, at Realtime.
                    redecide.append("--redecide-first")
                    if n == 2 and levels >= 3:
                        effort = REDECIDE_PASS1_EFFORT
                else:
                    # The serial rebase keeps the re-decide pass's references: its decisions
                    # were all xc's, made against pictures near these (bigbuckbunny's SSIM /
                    # PSNR-Y BD-rate +7.1% / +0.7% -> +6.7% / +0.3%, carphone's unchanged).
                    choices = [c for c in choices if c != "--choose-refs"]
                    # Its first frame is decided again on the exact state, around the re-decide
                    # pass's decisions (SERIAL_SEEDED_FIRST).
                    if SERIAL_SEEDED_FIRST:
                        redecide += ["--seeded-first"]
            elif (self.redecide and k is not None and n == 1 and not self.rekeys(k)
                  and self._passes(k) == 2):
                # Pass 1 is final here: it decides on the chain's own state.
                redecide += every[1:]
            chain = ["-q", effort, *choices, *floored, *redecide]
            return weight + (chain if self.chain == "excamera" else [])
        return weight + self.plan.flags(n, self.s_ac_qi)

    def level(self, k: int) -> int:
        """Worker ``k``'s quality level (vpxenc's --cq-level)."""
        return self.y_ac_qi if self.levels is None else self.levels[k]

    def pass0_argv(self, k: int) -> list[str]:
        """Chunk ``k``'s independent encode (pass 0) into output.ivf (and, by xc-enc, its
        final.state) at its quality level, on the one cq-level scale."""
        if self.pass0 == "vpxenc":
            return ["vpxenc", *vpxenc_pass0_settings(self.level(k), self.pass0_key_floor),
                    "-o", "output.ivf", "input.y4m"]
        return ["xc-enc", "-y", str(cq_level_qindex(self.level(k))), "-i", "y4m", "-O",
                "final.state", "-o", "output.ivf", "input.y4m"]

    def worker_plan(self, k: int) -> WorkerPlan:
        has_successor = k + 1 < self.n_parts and (
            self.kf_dist is None or self.eff(k + 1) != 0
        )
        send: set[int] = set()
        if has_successor:
            for need in self._needs(k + 1).values():
                send.add(need.inp)
                if need.prev is not None:
                    send.add(need.prev)
        return WorkerPlan(
            passes=self._passes(k),
            needs=self._needs(k),
            out_tags=self._out_tags(k),
            send_tags=frozenset(send),
            successor_needs_convergence=(k + 1 < self.n_parts
                                         and self.join(k + 1).kind == JOIN_EARLIER),
            rekey_pass=1 if self.rekeys(k) else None,
        )

    def join(self, k: int) -> Join:
        """How chunk ``k``'s final output (k >= 1) was encoded against chunk ``k - 1``'s."""
        if not 1 <= k < self.n_parts:
            raise PlanError(f"join {k}: workers 1..{self.n_parts - 1} have a predecessor")
        last = self._passes(k) - 1
        need = self._needs(k).get(last)
        if need is None:
            return Join(k, JOIN_KEY)
        pred_final = self._out_tags(k - 1)[self._passes(k - 1) - 1]
        kind = JOIN_FINAL if need.inp == pred_final else JOIN_EARLIER
        return Join(k, kind, need.inp, pred_final)

    def wavefront_warning(self) -> str | None:
        """One line, before launching, when some join can only be exact if a worker's rebased
        states converge (a wavefront of more workers than passes); None when every join is exact
        by construction."""
        risky = [k for k in range(1, self.n_parts) if self.join(k).kind == JOIN_EARLIER]
        if not risky:
            return None
        joins = join_names(self, risky)
        return (f"a wavefront of {self.n_parts} workers with {self.plan.total} passes: joins "
                f"{joins} are exact only if rebased states converge (a worker ending where it "
                "was one pass before), which they rarely do; for joins exact "
                f"by construction use batch mode (-K) or -p {self.n_parts}")


def join_names(params: XcencParams, ks: list[int]) -> str:
    """Joins named by their chunk numbers, ``a|b``, runs of consecutive ones as ``a|b..y|z``."""
    runs: list[list[int]] = []
    for k in ks:
        if runs and k == runs[-1][-1] + 1:
            runs[-1].append(k)
        else:
            runs.append([k])

    def name(k: int) -> str:
        return f"{k - 1 + params.offset}|{k + params.offset}"

    return ", ".join(name(r[0]) if len(r) == 1 else f"{name(r[0])}..{name(r[-1])}"
                     for r in runs)


def reencode_argv(tool: list[str], need: Need, flags: list[str]) -> list[str]:
    """alfalfa's re-encode command line as mu ran it; ``flags`` are ``-w`` and the phase flags
    (``XcencParams.pass_flags``)."""
    argv = [*tool, "-r", "-I", f"in_{need.inp}.state", "-p", "prev.ivf"]
    if need.prev is not None:
        argv += ["-S", f"in_{need.prev}.state"]
    argv += [*flags, "-i", "y4m", "-O", "final.state",
             "-o", "output.ivf", "input.y4m"]
    return argv
