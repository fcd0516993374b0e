"""The ExCamera encoder job (mu's xcenc_server.py): one worker per chunk, states handed along.

Keys (``k`` is the worker, chunk number ``k + offset``):

- input  ``<vid>/%08d.y4m`` (as png2y4m or ``excamera encode`` wrote them)
- output ``<vid>/out/%08d.ivf`` and ``<vid>/comp_txt/%08d.txt``

Per worker k, in order (each step is a named state for ``-O`` and the timeline):

1. ``retrieve`` the chunk; ``connect`` to the relay as (job, k, k+1), taking no blob longer
   than a hand-off of a state of the chunk's picture size.
2. Pass 0 (``pass0``): vpxenc with mu's settings at ``--cq-level=Y`` (or, with
   ``pass0="xc"``, ``xc-enc -y q`` at the quantizer index q that vpxenc gives level Y), then
   ``xcdump``: ``xc-dump output.ivf final.state``.
   The chunk starts with a key frame, so it decodes on its own.
3. Passes p = 1.. (``wait_state_p<p>``, ``reencode_p<p>``): receive the predecessor's state,
   then rebase this chunk onto it with alfalfa's command line::

       xc-enc -r -I <pred. state of pass p-1> -p prev.ivf [-S <pred. state of pass p-2>]
              -w 0.75 [phase flags] -i y4m -O final.state -o output.ivf input.y4m

   ``-w W`` (mu's 0.75) puts the converted first frame at quantizer W*kf_q + (1-W)*next_q.
   vpxenc's two-pass key frames sit at quantizer 0, so with 0.75 the first frame lands 7-8 dB
   below the key frame it replaces: far fewer bits, and close to what a serial encoder spends on
   an ordinary inter frame. ``-w -1`` omits ``-w``: xc-enc then picks the coarsest quantizer
   within 0.25 dB of the key frame's quality, so every frame stays within 0.5 dB of the
   independently encoded chunks (crates/xc/src/tests/rebase.rs), at many more bits per chunk.

   ``prev.ivf`` is this worker's previous output, which was encoded against the ``-S`` state
   (none on pass 1: the pass-0 output starts with a key frame). After a pass whose state the
   successor needs, ``send_s<tag>`` packs ``final.state`` as mu's ``STATE(<tag>):`` plus an
   envelope naming the codec (none by default), the length and the SHA-256 of the state
   (:mod:`.handoff`), and sends it to k+1 through the relay, in one operation; the receiver
   checks the hash and bounds the state by its own picture size as it stores it.
4. ``compare``: when the worker ran two passes or more, ``comp-states prev.state final.state``
   is appended to ``comp.txt`` (its own last two states; identical means the successor, which
   rebased onto the older one, decodes exactly). ``comp.txt`` is uploaded for every worker,
   converged or not, empty when there was nothing to compare.
5. ``upload`` ``output.ivf`` and ``comp.txt``; quit.

Passes and phases (``-p``). mu's code takes ``w,x,y,z`` passes per phase (default 1,0,3,2):
phase 1 is pass 0 (vpxenc; w > 1 repeats it, pointlessly but as mu did), phase 2 plain rebases
(no extra flag), phase 3 the S phase (``--s-ac-qi S``), phase 4 the closing rebases: plain
ones again, the very last pass of the plan with ``--fix-prob-tables``. (mu's phase 4 also
passed alfalfa's ``--refine-sw``, a refinement of the motion search window; xc-enc does not
implement it, so it is neither passed nor accepted.) The run right after the first S-phase pass
adds ``--reencode-first-frame``. The guide's integer form ``-p N`` (default 7) is read as N
passes in all: pass 0, then an S phase of N-3 passes and the closing phase's 2
(``1,0,N-3,2``); ``-p 3`` is
``1,0,1,1``, ``-p 2`` is ``1,0,1,0`` and ``-p 1`` is pass 0 alone: every chunk independent,
each starting with a key frame.

Wavefront (no ``-K``): worker k runs ``min(P, k+1)`` passes; its pass p rebases onto worker
k-1's pass p-1 state. Workers k <= P-1 therefore end on their predecessor's final state and are
exact. A worker k >= P ends on worker k-1's *second-to-last* state, so the join k-1|k is exact
only if worker k-1 converged (its last two passes gave identical states), which comp-states
reports as mu's did. xc-enc's rebases onto different states do not give identical states (on
carphone about 69,000 bits differ between a worker's last two, whatever P), so with n > P the
command warns before launching (``XcencParams.wavefront_warning``). Every worker uploads its
chunk and its comp-states text either way, as mu's did; the job then judges each join from the
workers' state hashes (``joins``): the state a chunk's final pass rebased onto against the
state its predecessor ended on. It prints which joins are exact and, if any is not, fails with
one line naming them: the chunks are there to inspect, but they do not form one stream and
nothing stitches them. Batch mode, which ``excamera encode`` runs, never relies on convergence.

Batch mode (``-K x``, ExCamera[n,x]): chunk k is number ``k mod x`` of its batch. The first
chunk of each batch keeps its key frame (1 pass); the second rebases once onto the first's final
state (2 passes); every later one rebases once onto its predecessor's pass-0 state (pass 1, in
parallel) and then onto its predecessor's *final* state (pass 2, serially along the batch, with
``-S`` the pass-0 state that pass 1 used). With ``XcencParams.redecide`` (``excamera
encode``'s default) those later chunks run a re-decide pass in between (pass 2, in parallel,
onto the predecessor's pass-1 state; it decides every frame of the chunk anew, the first
frame's modes and vectors and the later frames' that pass 0 decided against its own key frame),
and the serial rebase is pass 3; the second chunk of a batch, whose pass 1 is final, decides its
later frames anew there. With ``XcencParams.redecide_levels`` L > 1 (``excamera encode
--redecide-levels``) a chunk at position e runs min(L, e - 1) re-decide passes in parallel,
pass j onto the predecessor's pass j - 1 (passes from 2 on handed on under tags from
``kf_dist``), and the serial rebase follows them. Every chunk is then exact by construction
and no worker runs more than 3 + L passes. The re-encodes are plain
rebases, without phase flags. With ``--chain excamera`` (the default) they also keep
references across chunk joins and let rebased macroblocks choose among them, and the converted
first frame gets the encoder's Good effort (Realtime in pass 1 of a chunk that re-decides it in
pass 2); ``--chain mu`` runs them as mu did (see
``XcencParams.pass_flags``). Batch mode needs ``-p 1`` or at least 3 passes.

Tools (``--tools``): the xc command lines above run inside the worker's own interpreter by
default (the ``xcenc_tool`` operation), or as one new Python process each with ``--tools
subprocess``, as mu ran its binaries; the output is byte-identical. vpxenc is always a process.

Restartability (``--retries``, and straggler duplicates, ``--straggler-k``): outputs go to
deterministic keys. A receiver skips a state it already has (a restarted predecessor, or a
duplicate of it, sends its states again, byte-identical). Because a restarted *receiver*
cannot get back what the relay already delivered to its dead predecessor attempt, every
handed-off state is also stored under ``<vid>/handoff/`` when retries or duplicates are on
(after it went to the relay, so the relay's receiver does not wait for the upload), and a
retry or a duplicate (attempt > 0) reads its states from there after the sender announced
them. A duplicate sends through the relay under an id of its own, which its successor
accepts as its predecessor's (see :mod:`excamera.mu.stragglers`).
"""
