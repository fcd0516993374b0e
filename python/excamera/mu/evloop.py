"""The event loop a long-running mu process runs on, and its per-connection TLS buffer.

uvloop (the optional ``scale`` extra) is a faster drop-in for asyncio's loop: a worker host
with thousands of TLS connections spends about a fifth less CPU per handshake on it (measured
by ``bench/scale.py``). Without it asyncio's own loop runs, with the same behaviour.

asyncio's TLS transport zero-fills a 256 KiB read buffer per connection (Python 3.11-3.13): at
10,000 connections that is 2.5 GB before a byte is read. A process that holds many
connections (the relay, a worker host, a coordinator of thousands) sets it lower, once, for
itself; uvloop's transport allocates its buffer without touching it.

Such a process also raises its open-file limit (``raise_fd_limit``), here rather than beside
the relay's command so that a worker host loads neither the relay nor the TLS certificate code.
"""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import ctypes
import ctypes.util
import gc
import resource
import sys
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")

LOOPS = ("auto", "asyncio", "uvloop")
MIN_TLS_BUFFER_KIB = 16  # one TLS record
MAX_TLS_BUFFER_KIB = 4096


def have_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def loop_name(choice: str) -> str:
    """The loop ``choice`` (one of LOOPS) gives here: "uvloop" or "asyncio"."""
    if choice not in LOOPS:
        raise ValueError(f"event loop {choice!r} is not one of {', '.join(LOOPS)}")
    if choice == "uvloop" and not have_uvloop():
        raise ValueError("uvloop is not installed (pip install 'excamera[scale]')")
    if choice == "auto":
        return "uvloop" if have_uvloop() else "asyncio"
    return choice


def run(main: Coroutine[Any, Any, T], choice: str = "auto") -> T:
    """``asyncio.run(main)`` on the loop ``choice`` names."""
    if loop_name(choice) == "uvloop":
        import uvloop

        return uvloop.run(main)
    return asyncio.run(main)


def set_tls_buffer(kib: int) -> None:
    """Set asyncio's per-connection TLS read buffer for this whole process (KiB, 16..4096).

    A process-wide class attribute: only a process that is nothing but a server or a worker
    host calls this (``excamera relay``, the worker host, ``bench/scale.py``'s coordinator).
    """
    if not MIN_TLS_BUFFER_KIB <= kib <= MAX_TLS_BUFFER_KIB:
        raise ValueError(f"the TLS buffer is {MIN_TLS_BUFFER_KIB}..{MAX_TLS_BUFFER_KIB} KiB, "
                         f"not {kib}")
    asyncio.sslproto.SSLProtocol.max_size = kib * 1024


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3


def tune_for_many_connections() -> None:
    """Tune this process's garbage collector and allocator for thousands of connections.

    Two costs grow with the number of live connections rather than with the work done:

    * The cyclic garbage collector: a process holding 10,000 connections has millions of
      live container objects, and each full collection walks all of them. Objects alive
      now (imports, configuration) are moved out of its sight (``gc.freeze``), and young
      collections run after 50,000 net allocations instead of 700.
    * Fresh pages: TLS reads and frame bodies are 16 KiB to 1 MiB buffers. glibc serves
      those above 128 KiB with mmap, and returns a heap top beyond 128 KiB to the kernel, so
      a storm of hand-offs keeps faulting in pages the kernel must zero first (a quarter
      of the relay's CPU time in ``bench/scale.py``'s storm at 10,000 workers). Keeping them
      on the heap and keeping freed memory for reuse costs some resident memory after a peak.

    Only long-running mu servers call it (the relay, a worker host, a coordinator of
    thousands); it changes nothing a caller can observe besides time and memory.
    """
    gc.freeze()
    gc.set_threshold(50_000, 10, 10)
    if sys.platform != "linux":
        return
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        mallopt = None
    if mallopt is None:
        return
    mallopt(_M_MMAP_THRESHOLD, 32 << 20)
    mallopt(_M_TRIM_THRESHOLD, 512 << 20)
    mallopt(_M_TOP_PAD, 16 << 20)


def raise_fd_limit(wanted: int) -> int:
    """Raise the soft RLIMIT_NOFILE toward ``wanted`` (up to the hard limit); returns it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft != resource.RLIM_INFINITY and soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    return soft
