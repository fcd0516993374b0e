"""The project's one wheel builder: ``make wheel``, the Lambda package and the Ray backend's
workers all install what :func:`build_wheel` makes.

``maturin build --release`` makes an abi3 wheel (CPython 3.11 and later) and checks it against
the manylinux policy :data:`POLICY` (``--auditwheel check``: it fails rather than repairs).

Why zig: Rust's standard library binds each glibc symbol at the version of the glibc it is
linked against. Linked on this machine (glibc 2.36), the extension needs GLIBC_2.34 for
``pthread_key_create``, ``pthread_key_delete`` and ``pthread_setspecific`` (moved from
libpthread into libc in 2.34, with new versions) and GLIBC_2.33 for ``stat64``/``fstat64``
(real functions only since 2.33), all from std's thread-locals and ``std::fs``. No code of ours
calls them, so they cannot be avoided short of relinking std; ``maturin --zig`` links against
zig's glibc 2.17 stubs instead, and the same extension then needs nothing newer than
GLIBC_2.14 (``memcpy``): manylinux2014. The cost is a second cargo build for the explicit
target triple (``target/x86_64-unknown-linux-gnu``), once; after that it is incremental.
The install as a whole still needs what its dependencies' wheels need (PyAV's and numpy's
are manylinux_2_28).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from .errors import CommandError

#: The manylinux policy the wheel is checked against (glibc 2.17; maturin tags it
#: manylinux2014 and manylinux_2_17).
POLICY = "manylinux_2_17"


def source_checkout() -> Path | None:
    """The repository this package runs from, if it is a checkout (a wheel is built from one)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "Cargo.toml").is_file() and (root / "pyproject.toml").is_file():
        return root
    return None


def _tool(name: str) -> str | None:
    """``name`` beside the running interpreter (its venv's bin), else on PATH."""
    return shutil.which(name, path=f"{Path(sys.executable).parent}{os.pathsep}"
                        f"{os.environ.get('PATH', '')}")


def build_wheel(repo: Path, out_dir: Path) -> Path:
    """Build this checkout's wheel into ``out_dir`` (which must hold no other excamera wheel).

    ``-i`` names the running interpreter, the one ``make setup``'s ``maturin develop`` used, so
    cargo sees the same PyO3 configuration. zig comes from the ``ziglang`` package (``python-zig``
    beside the interpreter), named to maturin through ``CARGO_ZIGBUILD_ZIG_PATH``: maturin's own
    search runs ``python3 -m ziglang`` from PATH, which need not be this interpreter.

    The linker wrappers maturin writes, and zig's own cache, live under the checkout's
    ``target/`` rather than the caller's ``XDG_CACHE_HOME``: cargo rebuilds every crate when
    the linker's path changes (1m44 here), so a caller with another cache directory (a test
    that isolates its own) must not move them.
    """
    maturin = _tool("maturin")
    zig = _tool("python-zig")
    if maturin is None or zig is None:
        raise CommandError("building the wheel needs maturin and zig: pip install "
                           "'maturin[zig]>=1.7,<2' (make setup installs both)")
    argv = [maturin, "build", "--release", "-q", "-i", sys.executable, "--zig",
            "--compatibility", POLICY, "--auditwheel", "check", "-o", str(out_dir)]
    cache = repo / "target" / "zig-cache"
    env = {**os.environ, "CARGO_ZIGBUILD_ZIG_PATH": zig, "XDG_CACHE_HOME": str(cache),
           "ZIG_GLOBAL_CACHE_DIR": str(cache / "zig")}
    try:
        proc = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True)
    except OSError as exc:
        raise CommandError(f"maturin build: cannot run {maturin}: {exc.strerror}") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).strip().splitlines() if ln.strip()]
        raise CommandError("maturin build failed: "
                           + (lines[-1] if lines else f"exit {proc.returncode}"))
    wheels = sorted(out_dir.glob("excamera-*.whl"))
    if len(wheels) != 1:
        raise CommandError(f"maturin build left {len(wheels)} wheels in {out_dir}, expected one")
    return wheels[0]


def build_into(out_dir: Path) -> Path:
    """Build the wheel and put it in ``out_dir`` in place of any excamera wheel there before
    (a stale one would be installed by ``pip install dist/*.whl`` beside the new one)."""
    repo = source_checkout()
    if repo is None:
        raise CommandError("not running from a source checkout: a wheel is built from one")
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="excamera-wheel-") as tmp:
        built = build_wheel(repo, Path(tmp))
        for old in out_dir.glob("excamera-*.whl"):
            old.unlink()
        target = out_dir / built.name
        shutil.move(built, target)
    return target


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m excamera.wheel",
                                description="Build the excamera wheel (make wheel).")
    p.add_argument("-o", dest="out_dir", type=Path, default=Path("dist"),
                   help="directory for the wheel (dist)")
    args = p.parse_args(argv)
    try:
        print(build_into(args.out_dir))
    except CommandError as exc:
        print(f"excamera wheel: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
