"""Output files that appear complete or not at all.

Every command that writes a result file goes through :func:`atomic_output`: the content is
written to a fresh temporary file in the destination's directory and renamed over the
destination only when the writer finished without an error. rename() within one directory is
atomic on POSIX, so a reader (or a user after a failure) sees the previous file or the complete
new one, never a cut one that looks valid. Temporary files are created with
``O_CREAT | O_EXCL | O_NOFOLLOW``, so a name planted in the directory makes the creation fail
instead of being written through.

A destination that is a symlink to a regular file is treated as that file (the new content
replaces the file the link names, and the link stays), as a plain ``open()`` would write
through it; ``/dev/stdout`` redirected to a file is such a link. A destination that exists and
is not a regular file (``/dev/null``, ``/dev/full``, a FIFO, a terminal) cannot be replaced by
renaming a file over it and is not meant to be: it is written in place. Such output streams by
nature; a failure part-way is still reported, and the command exits non-zero.

Keys are different: :func:`write_files_atomically` never follows a symlink at a destination;
it replaces the link, so that no planted link can make a key land somewhere else.
"""

from __future__ import annotations

import io
import os
import stat

TYPE_CHECKING = False  # typing itself imports re
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from contextlib import AbstractContextManager

    # Imported where used: pathlib's imports (re, urllib.parse...) would cost every short
    # command's start-up several milliseconds, and is_special needs none of it.
    from pathlib import Path

_EXCLUSIVE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def open_exclusive(path: str | os.PathLike[str], perms: int = 0o666) -> io.BufferedWriter:
    """Create ``path`` for writing; fail if any file, symlink included, already has the name.

    ``perms`` passes through the umask, like any new file's mode.
    """
    return os.fdopen(os.open(path, _EXCLUSIVE, perms), "wb")


def is_special(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` exists and is not a regular file (a device, FIFO or socket)."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def _temp_beside(dest: Path, perms: int, prefix: str | None) -> tuple[Path, io.BufferedWriter]:
    """Create a fresh temporary file in ``dest``'s directory; its path and the open file.

    The name is ``prefix`` (default ``.<dest name>.partial-``) and random hex, so concurrent
    writers of one destination never share a temporary file.
    """
    name = f".{dest.name}.partial-" if prefix is None else prefix
    tmp = dest.parent / f"{name}{os.urandom(8).hex()}"
    try:
        return tmp, open_exclusive(tmp, perms)
    except OSError as exc:
        # Name the destination the user gave, not a temporary file nobody asked for.
        raise OSError(exc.errno, exc.strerror, str(dest)) from None


def _replace(tmp: Path, dest: Path) -> None:
    try:
        os.replace(tmp, dest)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(dest)) from None


def atomic_output(
    dest: str | os.PathLike[str],
    *,
    perms: int = 0o666,
    prefix: str | None = None,
    fsync: bool = False,
) -> AbstractContextManager[Path]:
    """Yield the path to write ``dest``'s content to; it becomes ``dest`` when the block succeeds.

    The yielded file already exists (empty); the block opens it by name, which suits writers
    that take a path. If the block raises, the file is removed and ``dest`` is untouched.
    ``fsync`` flushes the data to disk before the rename, so that a crash cannot leave a renamed
    but empty file. For a special destination (see the module docstring) the yielded path is
    ``dest`` itself. Errors about the temporary file name ``dest``.
    """
    # contextlib (with collections and functools) is imported on first use: commands that
    # write to a device, as a speed check does (-o /dev/null), start about 2 ms sooner.
    from contextlib import contextmanager

    return contextmanager(_atomic_output)(dest, perms=perms, prefix=prefix, fsync=fsync)


def _atomic_output(
    dest: str | os.PathLike[str],
    *,
    perms: int,
    prefix: str | None,
    fsync: bool,
) -> Iterator[Path]:
    """The generator behind :func:`atomic_output`."""
    from pathlib import Path

    dest = Path(dest)
    if is_special(dest):
        yield dest
        return
    if dest.is_symlink():
        dest = Path(os.path.realpath(dest))
    tmp, f = _temp_beside(dest, perms, prefix)
    f.close()
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_files_atomically(files: Iterable[tuple[Path, bytes, int]]) -> None:
    """Write each ``(dest, data, perms)`` through an exclusively created, fsynced temporary file.

    Every file is written before any is renamed, so a failure while writing (a full disk)
    leaves all destinations as they were; only a failing rename can leave some replaced and
    others not. The data goes through the descriptor that created the temporary file, never
    through a name that something could have swapped meanwhile. ``perms`` is applied exactly
    (not through the umask): a key is 0600 whatever the caller's umask.
    """
    from pathlib import Path

    staged: list[tuple[Path, Path]] = []
    try:
        for dest, data, perms in files:
            tmp, f = _temp_beside(Path(dest), 0o600, None)
            staged.append((tmp, Path(dest)))
            try:
                with f:
                    os.fchmod(f.fileno(), perms)
                    f.write(data)
                    f.flush()
                    os.fsync(f.fileno())
            except OSError as exc:
                raise OSError(exc.errno, exc.strerror, str(dest)) from None
        while staged:
            tmp, dest = staged[0]
            _replace(tmp, dest)
            staged.pop(0)
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)


def write_atomically(dest: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` as the whole content of ``dest`` through :func:`atomic_output`."""
    with atomic_output(dest) as path, open(path, "wb") as f:
        f.write(data)
