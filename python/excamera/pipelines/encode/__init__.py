"""``excamera.encode``: the whole ExCamera encode of one file, as stages with typed seams.

:class:`~.settings.EncodeSettings` says what to do; :func:`~.run.encode` does it, one stage
after the other, each a function of the previous stages' values (``run.py``):

1. **input** (``read_input``, ``read_audio``, ``split``): probe the source (Y4M, or anything
   PyAV decodes) and decide what becomes of its audio (:class:`~..audio.AudioPlan`: copied,
   transcoded to Opus, or dropped for ``audio=False`` and for IVF output),
   split it into Y4M chunks of ``chunk`` frames (the last may be shorter) and put them in the
   job's storage under ``<stem>-y4m_<chunk>/%08d.y4m`` -> :class:`~.run.Chunks`.
2. **plan** (``plan``): the xcenc job's :class:`~excamera.pipelines.xcenc.plan.XcencParams`:
   one worker per chunk, batch mode with a key frame every ``batch`` chunks, at most
   ``workers`` encodes at once (``cpu_slots``). Pure.
3. **job** (``run_encode_job``): the xcenc job on the backend (``build_backend``: a name with
   its options, a spec, or a built Backend) with mu's :class:`~excamera.mu.jobs.JobSettings`
   -> mu's ``JobResult`` (per-worker outputs, attempts, CPU-seconds, state times, cost).
   With ``target_bitrate``, ``encode_to_target`` runs plan, job and stitch as whole trial
   encodes at per-chunk quality levels until the file's bitrate lands (``ratecontrol.py``).
4. **stitch** (``fetch_and_stitch``, ``write_container``): fetch the chunk IVFs, join them into
   one stream (one header, continuous timestamps) and write it as IVF or, for ``.webm``, mux
   it with PyAV without re-encoding, beside the input's audio, to a temporary file beside the
   output.
5. **check and measure** (``workers_quality``): each worker decoded its own chunk from the
   state it was encoded against and measured PSNR and SSIM sums against its source chunk
   (:mod:`excamera.metrics`, op ``xcenc_measure``); they are added up here, every chunk must
   join at exactly the state its predecessor's decode ends on (by the hashes the workers
   report) and the stream must show the input's frames. ``verify`` (``--verify``) also
   decodes the stitched stream in full (``check_and_measure``) and checks that it agrees.
   Only then is the temporary file renamed to the output, so a failure never leaves a
   partial output.
6. **result** (``result``): :class:`~.result.EncodeResult`.

Every failure is an :class:`~excamera.errors.ExcameraError`. Nothing here knows the command
line: ``excamera encode`` (``pipelines/encode_cmd.py``) calls the Python API
(``excamera.encode``, in ``excamera/api.py``), which builds the settings and calls
:func:`~.run.encode`. This package's ``__init__`` imports nothing, so that
``excamera.EncodeResult`` (``result.py``) loads without the stages' numpy and PyAV.
"""
