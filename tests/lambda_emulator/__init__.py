"""A local emulator of AWS Lambda for tests: NOT AWS, and every figure it gives is emulated.

No AWS account and no docker are available here, so whole jobs run against this stand-in: the
Lambda service API that boto3 speaks (:mod:`.service`) and, per execution environment, the
Runtime API that AWS's own runtime interface client, ``awslambdaric`` from PyPI, speaks
(:mod:`.runtime`). The function's real deployment zip is unpacked and run by
``python3.12 -m awslambdaric HANDLER`` processes, one per environment, with Lambda's
environment variables and nothing of the caller's environment.

Emulated faithfully enough to test a backend against:
- CreateFunction / UpdateFunctionCode / UpdateFunctionConfiguration / GetFunction(
  Configuration) / DeleteFunction, event-invoke config, reserved concurrency, GetAccountSettings
  (account concurrency configurable, default 1,000), with Lambda's on-demand limits (memory
  128..10,240 MB, timeout 1..900 s, 50 MB zipped, 250 MB unzipped, 4 KB of variables) and
  CodeSha256 as AWS computes it (base64 of the zip's SHA-256);
- Invoke: RequestResponse, Event (202, queued, throttles wait with backoff, function errors
  retried MaximumRetryAttempts times, events older than MaximumEventAgeInSeconds dropped),
  DryRun; ``LogType=Tail``; payload quotas (6 MB sync, 1 MB async, 413); function errors as 200 +
  ``X-Amz-Function-Error: Unhandled``; 429 ``TooManyRequestsException`` with its Reason when
  reserved or account concurrency is used up; errors shaped as botocore's model expects;
  requests must carry a SigV4 Authorization header (the signature is not verified); functions
  live per region, the region of the credential scope;
- environments: cold starts, warm reuse, the function's timeout (kills the process group,
  ``Sandbox.Timedout``), crashes (``Runtime.ExitError``), init errors, a 10 s INIT limit,
  START/END/REPORT log lines (REPORT lines end in "(emulated)"), one log stream file per
  environment under ``STATE/logs/REGION/FUNCTION/``.

Not emulated: IAM (any role ARN is accepted, the role's credentials are whatever the emulator
was started with, ``--role-env``), versions and aliases, layers, VPC, destinations, SnapStart,
memory and CPU limits (MemorySize is reported, never enforced: the host's 2 cores are shared by
every environment, so durations under load are not AWS's), burst scaling (1,000 environments per
10 s per function on AWS), a read-only task root and a private root filesystem (the host's
/usr/bin is visible; /tmp is private only through TMPDIR), the sandbox user, and the
"suppressed init" re-run of a timed-out INIT. With ``--max-environments M`` (off by default) no
more than M environments live at once: past that an invocation waits for an idle environment of
its function and reuses it, where AWS would start a new one (this host's memory holds a few
hundred real workers, not thousands); ``waited_at_environment_cap`` counts those.
Environments of one code version share one unpacked task root; the runtime runs with ``-B`` so
no bytecode is written into it. AWS's python3.12 image also ships boto3; this one ships only
awslambdaric, so a zip must bring its own dependencies.

Emulator-only control routes (no authentication; 127.0.0.1 only), JSON:
- ``POST /_emulator/faults`` ``{"kind": K, "count": N, "function": NAME?, "after_s": S?,
  "after_log": TEXT?, "reason": R?}`` with K one of: ``throttle`` (the next N Invoke requests
  get 429, Reason R, default ConcurrentInvocationLimitExceeded), ``crash`` (the next N
  invocations' environments are SIGKILLed ``after_s`` after the runtime received the event, or,
  with ``after_log``, as soon as the invocation's log shows TEXT, which ties the fault to the
  function's progress rather than to a clock), ``timeout`` (their runtimes are frozen with
  SIGSTOP at the same moments, so the function's real timeout ends them), ``duplicate`` (the
  next N Event invocations are delivered twice, same request id);
  ``GET`` lists pending faults, ``DELETE`` clears them;
- ``GET /_emulator/records?since=I``: one record per invocation attempt (request id, function,
  cold/warm, init/duration/billed ms, memory, max memory used, status, error type), plus
  throttled and dropped ones, all labelled emulated;
- ``GET /_emulator/stats``: counts (invocations, throttles, cold starts, ...) and the
  emulator's own CPU and RSS; ``GET /_emulator/environments``: live environments and pids;
- ``POST /_emulator/account`` ``{"concurrent_executions": N}``;
- ``GET /_emulator/code/SHA.zip``: the stored zip (GetFunction's Code.Location points here).

Run it with ``python -m tests.lambda_emulator --state-dir DIR`` (see ``__main__``); tests use
the ``lambda_emulator`` fixture in ``tests/lambda_fixtures.py``.
"""
