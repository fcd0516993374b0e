"""Assemble the Lambda deployment zip (mu's lambdaize, for a Python worker).

The zip holds, at its root (Lambda's task root):

- ``excamera/`` with the Rust extension, unpacked from the project's manylinux wheel
  (``excamera.wheel`` builds it, or ``--wheel`` supplies one);
- the worker's Python dependencies, pip-installed for cp312 / manylinux2014_x86_64 from the
  pinned, hashed ``requirements.txt`` beside this file;
- ``bin/vpxenc``, static, from ``packaging/vpxenc/build.sh`` (or ``--vpxenc``);
- ``excamera_code.json``, the code identity of what it holds (``excamera.identity``), which
  ``excamera lambda deploy`` writes into the function's description;
- ``excamera-lambda.json``, what went in (versions and hashes).

The same inputs give the same bytes: entries sorted, one fixed timestamp, modes normalised to
0755/0644, no ``__pycache__``, and the wheel's SBOM (which maturin stamps with a time and a
random serial number) left out. Every ELF is checked against Lambda's runtime (``elf.py``) and
the sizes against Lambda's limits before anything is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from excamera.errors import CommandError

from ..wheel import build_wheel, source_checkout
from . import elf
from .deploy import CODE_FILE, DIRECT_UPLOAD_LIMIT, HANDLER, RUNTIME

REQUIREMENTS = Path(__file__).with_name("requirements.txt")
ARCHITECTURE = "x86_64"
PYTHON_VERSION = "3.12"
PIP_PLATFORM = "manylinux2014_x86_64"

# Lambda's quotas as its API states them (GetAccountSettings: AccountLimit.CodeSizeZipped and
# CodeSizeUnzipped): a direct upload of at most 50 MiB, at most 250 MiB unpacked.
MAX_ZIPPED = DIRECT_UPLOAD_LIMIT
MAX_UNZIPPED = 262_144_000

ZIP_TIME = (1980, 1, 1, 0, 0, 0)
MANIFEST = "excamera-lambda.json"
SKIP_DIRS = {"__pycache__"}


@dataclass(frozen=True)
class Entry:
    """One file of the zip: its path under the task root, bytes, and whether it is executable."""

    name: str
    data: bytes
    executable: bool = False


@dataclass
class BuildReport:
    path: Path
    sha256: str
    zipped: int
    unzipped: int
    files: int
    elf_files: int
    newest_glibc: str | None
    seconds: float


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "excamera"


def _run(argv: list[str], what: str, cwd: Path | None = None) -> str:
    try:
        proc = subprocess.run(argv, cwd=cwd, capture_output=True, text=True)
    except OSError as exc:
        raise CommandError(f"{what}: cannot run {argv[0]}: {exc.strerror}") from None
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr + proc.stdout).strip().splitlines() if ln.strip()]
        raise CommandError(f"{what} failed: {lines[-1] if lines else f'exit {proc.returncode}'}")
    return proc.stdout


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock while filling one cache entry (a test session and a
    `make lambda-zip` may build at once; the second waits and reuses)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        yield


# --- the inputs -------------------------------------------------------------------------------


def build_vpxenc(repo: Path) -> Path:
    """The static vpxenc from the recipe (built once per Debian version and recipe, cached)."""
    recipe = repo / "packaging" / "vpxenc" / "build.sh"
    if not recipe.is_file():
        raise CommandError(f"{recipe}: the vpxenc recipe is missing (or give --vpxenc)")
    out = _run(["sh", str(recipe)], "the vpxenc recipe")
    lines = out.strip().splitlines()
    if not lines or not Path(lines[-1]).is_file():
        raise CommandError("the vpxenc recipe printed no binary path")
    return Path(lines[-1])


def install_dependencies(requirements: Path = REQUIREMENTS) -> Path:
    """pip-install the pinned worker dependencies for Lambda's Python, cached by their inputs."""
    req = requirements.read_bytes()
    pip_version = _run([sys.executable, "-m", "pip", "--version"], "pip").split()[1]
    key = hashlib.sha256(
        b"\0".join([req, PYTHON_VERSION.encode(), PIP_PLATFORM.encode(), pip_version.encode()])
    ).hexdigest()[:16]
    target = cache_root() / f"lambda-deps-{key}"
    with _locked(cache_root() / f"lambda-deps-{key}.lock"):
        if target.is_dir():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f"lambda-deps-{key}.", dir=cache_root()))
        try:
            _run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                  "--no-deps", "--require-hashes", "--only-binary=:all:", "--no-compile",
                  "--platform", PIP_PLATFORM, "--implementation", "cp",
                  "--python-version", PYTHON_VERSION, "--target", str(tmp),
                  "-r", str(requirements)], "pip install of the worker's dependencies")
            os.rename(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


# --- collecting entries -----------------------------------------------------------------------


def _wheel_compatible(name: str) -> bool:
    """Whether a wheel's tags can load on CPython 3.12 for x86-64 Linux."""
    m = re.match(r"^[^-]+-[^-]+(?:-\d[^-]*)?-([^-]+)-([^-]+)-([^-]+)\.whl$", name)
    if not m:
        return False
    py, abi, plat = m.groups()
    abi3 = abi == "abi3" and any(
        re.fullmatch(r"cp3(\d+)", t) and int(t[3:]) <= 12 for t in py.split(".")
    )
    exact = "cp312" in py.split(".") and "cp312" in abi.split(".")
    return (abi3 or exact) and any(
        t.endswith("_x86_64") and t.startswith("manylinux") for t in plat.split(".")
    )


def wheel_entries(wheel: Path) -> list[Entry]:
    """The wheel's files as zip entries, without the SBOM (stamped with a build time and a
    random serial number, so never the same twice) and with RECORD to match."""
    if not _wheel_compatible(wheel.name):
        raise CommandError(f"{wheel.name}: not a wheel for CPython 3.12 on manylinux x86_64")
    out: list[Entry] = []
    try:
        with zipfile.ZipFile(wheel) as zf:
            for info in zf.infolist():
                name = info.filename
                if info.is_dir() or _skipped(name):
                    continue
                parts = name.split("/")
                if parts[0].endswith(".data"):
                    raise CommandError(f"{wheel.name}: has a .data directory ({name}),"
                                       " which this build does not place")
                if len(parts) > 2 and parts[0].endswith(".dist-info") and parts[1] == "sboms":
                    continue
                data = zf.read(info)
                if len(parts) == 2 and parts[0].endswith(".dist-info") and parts[1] == "RECORD":
                    keep = [ln for ln in data.decode().splitlines(keepends=True)
                            if not ln.startswith(f"{parts[0]}/sboms/")]
                    data = "".join(keep).encode()
                out.append(Entry(name, data, bool((info.external_attr >> 16) & 0o111)))
    except (zipfile.BadZipFile, OSError) as exc:
        raise CommandError(f"{wheel}: cannot read the wheel: {exc}") from None
    return out


def _skipped(name: str) -> bool:
    parts = name.split("/")
    return any(p in SKIP_DIRS for p in parts) or name.endswith((".pyc", ".pyo"))


def tree_entries(root: Path) -> list[Entry]:
    """Files under a pip --target directory, minus its ``bin/`` (console scripts whose
    shebang names the build machine's Python; the worker runs none of them)."""
    out: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != "bin"]
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS)
        for fname in filenames:
            path = Path(dirpath) / fname
            name = fname if rel_dir == "." else f"{rel_dir}/{fname}"
            if _skipped(name):
                continue
            if path.is_symlink() or not path.is_file():
                raise CommandError(f"{path}: not a regular file; the zip holds only files")
            out.append(Entry(name, path.read_bytes(), bool(path.stat().st_mode & 0o111)))
    return out


def vpxenc_entry(vpxenc: Path) -> tuple[Entry, dict[str, object]]:
    """bin/vpxenc, and what the recipe recorded of its source (for the manifest)."""
    try:
        data = vpxenc.read_bytes()
    except OSError as exc:
        raise CommandError(f"{vpxenc}: cannot read: {exc.strerror}") from None
    if not elf.is_elf(data):
        raise CommandError(f"{vpxenc}: not an ELF executable")
    about: dict[str, object] = {"sha256": hashlib.sha256(data).hexdigest(),
                                "source": "supplied with --vpxenc"}
    note = vpxenc.with_name("SOURCE.txt")  # written by packaging/vpxenc/build.sh
    if note.is_file():
        fields = [ln.split(": ", 1) for ln in note.read_text().splitlines() if ": " in ln]
        about.update({k: v for k, v in fields if k in ("source", "recipe")})
        about["debian_patches"] = [v for k, v in fields if k == "patch"]
    return Entry("bin/vpxenc", data, True), about


def code_identity_of(entries: list[Entry]) -> dict[str, str]:
    """The code identity the zip's own excamera package reports, computed by that package in
    a separate interpreter whose first path is the zip's files (not this checkout's)."""
    with tempfile.TemporaryDirectory(prefix="excamera-identity-") as tmp:
        for e in entries:
            top = e.name.split("/")[0]
            if top == "excamera" or (top.startswith("excamera-") and top.endswith(".dist-info")):
                target = Path(tmp) / e.name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(e.data)
        code = ("import json, sys; sys.path.insert(0, sys.argv[1]);"
                " from excamera.identity import code_identity;"
                " print(json.dumps(code_identity(), sort_keys=True))")
        out = _run([sys.executable, "-I", "-c", code, tmp], "reading the package's code identity")
    identity = json.loads(out)
    if identity.get("xc_build") in (None, "none", "unknown"):
        raise CommandError("the package's extension reports no build hash (is the wheel"
                           " built from this source tree?)")
    return identity


# --- the zip ----------------------------------------------------------------------------------


def write_zip(entries: list[Entry], path: Path) -> None:
    """Write entries deterministically: sorted, fixed time, Unix modes 0755/0644."""
    with zipfile.ZipFile(path, "w") as zf:
        for e in sorted(entries, key=lambda e: e.name):
            info = zipfile.ZipInfo(e.name, date_time=ZIP_TIME)
            info.create_system = 3  # Unix, so unzip and Lambda honour the mode bits
            info.external_attr = (0o100000 | (0o755 if e.executable else 0o644)) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, e.data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=6)


def _mb(n: int) -> str:
    return f"{n / 1_048_576:.1f} MiB"


def assemble(entries: list[Entry], out: Path) -> BuildReport:
    """Check the entries (names, ELF, sizes) and write the zip atomically to ``out``."""
    started = time.monotonic()
    names: dict[str, int] = {}
    for e in entries:
        if e.name.startswith("/") or ".." in e.name.split("/") or not e.name:
            raise CommandError(f"{e.name!r}: not a relative path inside the package")
        names[e.name] = names.get(e.name, 0) + 1
    dup = sorted(n for n, c in names.items() if c > 1)
    if dup:
        raise CommandError(f"two inputs both provide {dup[0]}")
    contents = {e.name: e.data for e in entries}
    found, infos = elf.check_tree(contents, ARCHITECTURE)
    if found:
        more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
        raise CommandError(f"refusing the package: {found[0]}{more}")
    unzipped = sum(len(e.data) for e in entries)
    if unzipped > MAX_UNZIPPED:
        raise CommandError(f"the package is {_mb(unzipped)} unzipped, over Lambda's"
                           f" {_mb(MAX_UNZIPPED)} limit")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write_zip(entries, tmp)
        zipped = tmp.stat().st_size
        if zipped > MAX_ZIPPED:
            raise CommandError(f"the package is {_mb(zipped)} zipped, over Lambda's"
                               f" {_mb(MAX_ZIPPED)} direct-upload limit")
        tmp.chmod(0o644)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    glibcs = [g for g in (elf.max_glibc(i) for i in infos.values()) if g]
    newest = max(glibcs, key=lambda g: tuple(int(p) for p in g[6:].split("."))) if glibcs \
        else None
    return BuildReport(out, hashlib.sha256(out.read_bytes()).hexdigest(), zipped, unzipped,
                       len(entries), len(infos), newest, time.monotonic() - started)


def build(
    out: Path,
    wheel: Path | None = None,
    vpxenc: Path | None = None,
    log: Callable[[str], None] = lambda _msg: None,
) -> BuildReport:
    """Make the deployment zip at ``out`` from a checkout (or the given wheel and vpxenc)."""
    started = time.monotonic()
    repo = source_checkout()
    if repo is None and (wheel is None or vpxenc is None):
        raise CommandError("not running from a source checkout: give --wheel and --vpxenc")
    with tempfile.TemporaryDirectory(prefix="excamera-lambda-") as tmp:
        if wheel is None:
            log("building the extension wheel (excamera.wheel: maturin build --release)")
            wheel = build_wheel(repo, Path(tmp))  # type: ignore[arg-type]
        if vpxenc is None:
            log("building or reusing the static vpxenc (packaging/vpxenc/build.sh)")
            vpxenc = build_vpxenc(repo)  # type: ignore[arg-type]
        log("installing or reusing the worker's dependencies (pip, cp312 manylinux2014)")
        deps = install_dependencies()
        entries = wheel_entries(wheel) + tree_entries(deps)
        vpx, vpx_about = vpxenc_entry(vpxenc)
        entries.append(vpx)
        manifest = {
            "runtime": RUNTIME,
            "handler": HANDLER,
            "architecture": ARCHITECTURE,
            "wheel": wheel.name,
            "requirements_sha256": hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest(),
            "vpxenc": vpx_about,
        }
        entries.append(Entry(MANIFEST, (json.dumps(manifest, indent=2, sort_keys=True)
                                        + "\n").encode()))
        entries.append(Entry(CODE_FILE, (json.dumps(code_identity_of(entries), sort_keys=True)
                                         + "\n").encode()))
        log("checking every ELF and writing the zip")
        report = assemble(entries, out)
    report.seconds = time.monotonic() - started
    return report


def read_manifest(zip_path: Path) -> dict:
    with zipfile.ZipFile(zip_path) as zf:
        return json.load(io.BytesIO(zf.read(MANIFEST)))
