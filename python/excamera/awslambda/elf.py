"""What an ELF file asks of the system that loads it, and whether Lambda's runtime has it.

A small reader of ELF64 little-endian files (the only kind Lambda runs): the section headers,
``.dynamic`` (NEEDED, RPATH, RUNPATH) and ``.gnu.version_r`` with ``.gnu.version`` and
``.dynsym`` to name the symbol behind each version requirement. It is written here rather than
taken from pyelftools because the build needs only this much, and a build-time dependency for
it would be one more pinned package to install before a zip can be made.

Every offset and count read from the file is checked against the file's size before use, so a
truncated or hostile file gives an :class:`ElfError`, never an IndexError or a long loop.

:func:`check_tree` applies the runtime policy to every ELF of a package tree.
"""

from __future__ import annotations

import posixpath
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field

MAGIC = b"\x7fELF"
EM_X86_64 = 62
EM_AARCH64 = 183
MACHINES = {"x86_64": EM_X86_64, "arm64": EM_AARCH64}

SHT_DYNAMIC = 6
SHT_DYNSYM = 11
SHT_GNU_VERNEED = 0x6FFFFFFE
SHT_GNU_VERSYM = 0x6FFFFFFF
DT_NULL, DT_NEEDED, DT_RPATH, DT_RUNPATH = 0, 1, 15, 29
PT_INTERP = 3
ET_EXEC = 2

# Lambda's python3.12 and newer runtimes run on Amazon Linux 2023, whose glibc is 2.34.
MAX_GLIBC = (2, 34)

# What Lambda's runtime is taken to provide: glibc's own libraries, which come with every
# glibc, plus two that the runtime's own Python cannot work without.
GLIBC_LIBRARIES = frozenset(
    {
        "libc.so.6",
        "libm.so.6",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libutil.so.1",
        "libresolv.so.2",
        "libmvec.so.1",  # glibc's vector math library (x86-64), in the same package as libm
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
    }
)
# libgcc_s.so.1: glibc itself dlopens it to unwind a thread in pthread_exit/pthread_cancel, so
# a glibc system with threads has it; and every Rust extension (ours, cryptography's) links it
# for panics, so without it no Rust extension could run at all.
# libz.so.1: the runtime's CPython links it for its zlib module, which boto3 and our hand-off
# messages use, so the runtime cannot lack it.
# libstdc++.so.6 is deliberately NOT assumed: neither glibc nor CPython needs it, Lambda does
# not document it, and Debian's own copy needs GLIBC_2.36 so it cannot be shipped either. A
# package needing it (numpy 2.x, a C++ vpxenc) is refused, and we pick ones that do not.
# For both, only symbol versions already in manylinux2014's baseline (CentOS 7: GCC 4.8,
# zlib 1.2.7) are accepted, so a newer copy than any glibc-2.34 system has is never assumed.
ASSUMED_LIBRARIES = {"libgcc_s.so.1": ("GCC_", (4, 8, 0)), "libz.so.1": ("ZLIB_", (1, 2, 7))}
RUNTIME_LIBRARIES = GLIBC_LIBRARIES | set(ASSUMED_LIBRARIES)


class ElfError(ValueError):
    """A file that claims to be ELF but cannot be read as one (named in the message)."""


@dataclass(frozen=True)
class VersionNeed:
    """One ``.gnu.version_r`` requirement: ``library`` must define ``version``."""

    library: str
    version: str
    symbols: tuple[str, ...] = ()


@dataclass
class ElfInfo:
    """What the dynamic loader needs to load one file."""

    machine: int
    elf_type: int = 0
    interpreter: str | None = None
    needed: list[str] = field(default_factory=list)
    rpath: list[str] = field(default_factory=list)
    runpath: list[str] = field(default_factory=list)
    version_needs: list[VersionNeed] = field(default_factory=list)

    @property
    def dynamic(self) -> bool:
        return bool(self.needed or self.interpreter or self.version_needs)


def is_elf(data: bytes) -> bool:
    return data[:4] == MAGIC


class _Reader:
    def __init__(self, data: bytes, name: str) -> None:
        self.data = data
        self.name = name

    def fail(self, what: str) -> ElfError:
        return ElfError(f"{self.name}: {what}")

    def unpack(self, fmt: str, offset: int) -> tuple:
        size = struct.calcsize(fmt)
        if offset < 0 or offset + size > len(self.data):
            raise self.fail(f"truncated (needs bytes {offset}..{offset + size})")
        return struct.unpack_from(fmt, self.data, offset)

    def span(self, offset: int, size: int, what: str) -> bytes:
        if offset < 0 or size < 0 or offset + size > len(self.data):
            raise self.fail(f"{what} lies outside the file")
        return self.data[offset : offset + size]

    @staticmethod
    def cstr(table: bytes, offset: int) -> str:
        if offset >= len(table):
            return ""
        end = table.find(b"\0", offset)
        raw = table[offset:] if end < 0 else table[offset:end]
        return raw.decode("utf-8", "replace")


def read_elf(data: bytes, name: str = "file") -> ElfInfo:
    """Parse what the loader reads; raises :class:`ElfError` for anything malformed."""
    r = _Reader(data, name)
    if data[:4] != MAGIC:
        raise r.fail("not an ELF file")
    if len(data) < 64:
        raise r.fail("truncated ELF header")
    if data[4] != 2 or data[5] != 1:
        raise r.fail("not a 64-bit little-endian ELF file (Lambda runs only those)")
    (e_type, e_machine) = r.unpack("<HH", 16)
    (e_phoff, e_shoff) = r.unpack("<QQ", 32)
    (e_phentsize, e_phnum, e_shentsize, e_shnum, e_shstrndx) = r.unpack("<HHHHH", 54)
    info = ElfInfo(machine=e_machine, elf_type=e_type)

    if e_phnum and e_phentsize < 56:
        raise r.fail(f"program header size {e_phentsize} is too small")
    for i in range(e_phnum):
        p_type, _flags, p_offset, _vaddr, _paddr, p_filesz = r.unpack(
            "<IIQQQQ", e_phoff + i * e_phentsize
        )
        if p_type == PT_INTERP:
            info.interpreter = r.span(p_offset, p_filesz, "PT_INTERP").rstrip(b"\0").decode(
                "utf-8", "replace"
            )

    if e_shnum == 0:
        if info.interpreter is not None:
            # The loader does not need sections, but we read NEEDED from them: refuse rather
            # than pass a dynamic file we could not inspect.
            raise r.fail("dynamic ELF without section headers cannot be checked")
        return info
    if e_shentsize < 64:
        raise r.fail(f"section header size {e_shentsize} is too small")
    sections = []
    for i in range(e_shnum):
        (_n, sh_type, _fl, _addr, sh_offset, sh_size, sh_link, _inf, _al, sh_entsize) = r.unpack(
            "<IIQQQQIIQQ", e_shoff + i * e_shentsize
        )
        sections.append((sh_type, sh_offset, sh_size, sh_link, sh_entsize))
    del e_shstrndx  # section names are not needed: sections are found by type

    def strtab(index: int) -> bytes:
        if not 0 <= index < len(sections):
            raise r.fail(f"section link {index} is out of range")
        _t, off, size, _l, _e = sections[index]
        return r.span(off, size, "string table")

    versym_names: dict[int, list[str]] = {}
    dynsym = [s for s in sections if s[0] == SHT_DYNSYM]
    versym = [s for s in sections if s[0] == SHT_GNU_VERSYM]
    if dynsym and versym:
        _t, sym_off, sym_size, sym_link, sym_ent = dynsym[0]
        if sym_ent < 24:
            raise r.fail(f".dynsym entry size {sym_ent} is too small")
        names = strtab(sym_link)
        syms = r.span(sym_off, sym_size, ".dynsym")
        vers = r.span(versym[0][1], versym[0][2], ".gnu.version")
        count = min(len(syms) // sym_ent, len(vers) // 2)
        for i in range(1, count):
            (st_name,) = struct.unpack_from("<I", syms, i * sym_ent)
            (st_shndx,) = struct.unpack_from("<H", syms, i * sym_ent + 6)
            (ver,) = struct.unpack_from("<H", vers, 2 * i)
            if st_shndx == 0:  # undefined here: a requirement on another library
                versym_names.setdefault(ver & 0x7FFF, []).append(_Reader.cstr(names, st_name))

    for sh_type, off, size, link, _ent in sections:
        if sh_type == SHT_DYNAMIC:
            names = strtab(link)
            body = r.span(off, size, ".dynamic")
            for pos in range(0, len(body) - 15, 16):
                tag, val = struct.unpack_from("<qQ", body, pos)
                if tag == DT_NULL:
                    break
                if tag == DT_NEEDED:
                    info.needed.append(_Reader.cstr(names, val))
                elif tag == DT_RPATH:
                    info.rpath.extend(p for p in _Reader.cstr(names, val).split(":") if p)
                elif tag == DT_RUNPATH:
                    info.runpath.extend(p for p in _Reader.cstr(names, val).split(":") if p)
        elif sh_type == SHT_GNU_VERNEED:
            names = strtab(link)
            body = r.span(off, size, ".gnu.version_r")
            pos, seen = 0, 0
            # Each step moves forward inside a section read into memory, and the number of
            # steps is bounded by the section's size: a cycle in vn_next cannot loop forever.
            limit = len(body) // 16 + 1
            while seen < limit:
                if pos + 16 > len(body):
                    raise r.fail(".gnu.version_r entry lies outside its section")
                _vn_ver, vn_cnt, vn_file, vn_aux, vn_next = struct.unpack_from(
                    "<HHIII", body, pos
                )
                library = _Reader.cstr(names, vn_file)
                apos = pos + vn_aux
                for _ in range(min(vn_cnt, limit)):
                    if apos + 16 > len(body):
                        raise r.fail(".gnu.version_r aux entry lies outside its section")
                    _hash, _flags, other, vna_name, vna_next = struct.unpack_from(
                        "<IHHII", body, apos
                    )
                    version = _Reader.cstr(names, vna_name)
                    symbols = tuple(sorted(set(versym_names.get(other, []))))
                    info.version_needs.append(VersionNeed(library, version, symbols))
                    if vna_next == 0:
                        break
                    apos += vna_next
                seen += 1
                if vn_next == 0:
                    break
                pos += vn_next
    return info


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


_GLIBC = re.compile(r"GLIBC_(\d+(?:\.\d+)+)$")
_VERSION = re.compile(r"[A-Z]+_(\d+(?:\.\d+)+)$")


def _expand_origin(entry: str, origin: str) -> str | None:
    """An RPATH/RUNPATH entry as a directory inside the package, or None if it is outside."""
    path = entry.replace("${ORIGIN}", "$ORIGIN")
    if "$" in path.replace("$ORIGIN", ""):
        return None  # $LIB, $PLATFORM: nothing we ship uses them, so they are not resolved
    if not path.startswith("$ORIGIN"):
        return None  # an absolute directory of the build machine, not in the package
    norm = posixpath.normpath(origin + path[len("$ORIGIN") :])
    if norm == ".." or norm.startswith("../") or norm.startswith("/"):
        return None
    return "" if norm == "." else norm


def _is_root(path: str, info: ElfInfo) -> bool:
    """Loaded by something outside the package: an executable, or a Python extension module
    (which CPython dlopens). Everything else is a library loaded only as another's NEEDED."""
    name = posixpath.basename(path)
    return (
        info.interpreter is not None
        or info.elf_type == ET_EXEC
        or name.endswith(".abi3.so")
        or bool(re.search(r"\.cpython-3\d+[^.]*\.so$", name))
    )


# A search path as the loader holds it: (directory of the object it came from, its entries).
_Dirs = tuple[tuple[str, tuple[str, ...]], ...]


def _resolve(lib: str, search: _Dirs, files: Mapping[str, object]) -> str | None:
    for origin, entries in search:
        for entry in entries:
            where = _expand_origin(entry, origin)
            if where is not None and posixpath.join(where, lib) in files:
                return posixpath.join(where, lib)
    return None


def _library_problems(
    infos: Mapping[str, ElfInfo], files: Mapping[str, object]
) -> list[str]:
    """Resolve every NEEDED the way glibc's loader does, starting from the package's roots.

    For an object with a RUNPATH only that RUNPATH is searched. For one without, its own
    RPATH and then the RPATHs of the chain of objects that loaded it are searched (numpy's
    bundled libgfortran finds libquadmath through the extension module's RPATH this way).
    LD_LIBRARY_PATH and the system's directories are not counted: a library is either one
    the runtime provides (RUNTIME_LIBRARIES) or one the package ships where this finds it.
    A library no root reaches is checked with its own search path alone.
    """
    out: dict[str, None] = {}  # ordered set: one line per problem, in a stable order
    seen: set[tuple[str, _Dirs]] = set()

    def visit(start: str) -> None:
        queue = [(start, ())]
        while queue:
            path, chain = queue.pop()
            if (path, chain) in seen:
                continue
            seen.add((path, chain))
            info = infos[path]
            origin = posixpath.dirname(path)
            if info.runpath:
                search: _Dirs = ((origin, tuple(info.runpath)),)
                passed: _Dirs = ()
            else:
                search = ((origin, tuple(info.rpath)),) + chain
                passed = search
            for lib in info.needed:
                if lib in RUNTIME_LIBRARIES:
                    continue
                target = _resolve(lib, search, files)
                if target is None:
                    out[
                        f"{path}: needs library {lib}, which Lambda's runtime does not provide"
                        " and the package does not ship where the loader would look"
                    ] = None
                # A chain longer than the number of objects means a NEEDED cycle: stop there.
                elif target in infos and len(passed) <= len(infos):
                    queue.append((target, passed))

    roots = [p for p in sorted(infos) if _is_root(p, infos[p])]
    for root in roots:
        visit(root)
    reached = {p for p, _ in seen}
    for path in sorted(infos):
        if path not in reached:
            visit(path)
    return list(out)


def _version_problems(path: str, info: ElfInfo, arch: str) -> list[str]:
    out: list[str] = []
    if info.machine != MACHINES[arch]:
        out.append(f"{path}: built for ELF machine {info.machine}, the function runs {arch}")
    for need in info.version_needs:
        symbols = f" (symbol {', '.join(need.symbols[:3])})" if need.symbols else ""
        if need.library in GLIBC_LIBRARIES:
            if need.version == "GLIBC_PRIVATE":
                out.append(f"{path}: needs GLIBC_PRIVATE from {need.library}{symbols},"
                           " which binds it to one glibc build")
                continue
            m = _GLIBC.match(need.version)
            if m and _version_tuple(m.group(1)) > MAX_GLIBC:
                out.append(
                    f"{path}: needs {need.version} from {need.library}{symbols};"
                    f" Lambda's runtime has glibc {'.'.join(map(str, MAX_GLIBC))}"
                )
        elif need.library in ASSUMED_LIBRARIES:
            prefix, newest = ASSUMED_LIBRARIES[need.library]
            m = _VERSION.match(need.version)
            if not (need.version.startswith(prefix) and m
                    and _version_tuple(m.group(1)) <= newest):
                out.append(
                    f"{path}: needs {need.version} from {need.library}{symbols}; only"
                    f" {prefix}{'.'.join(map(str, newest))} and older are assumed"
                )
    return out


def max_glibc(info: ElfInfo) -> str | None:
    """The newest GLIBC_x.y version a file requires, or None (for reports)."""
    found = [
        _version_tuple(m.group(1))
        for n in info.version_needs
        if n.library in GLIBC_LIBRARIES and (m := _GLIBC.match(n.version))
    ]
    return "GLIBC_" + ".".join(map(str, max(found))) if found else None


def check_tree(
    files: Mapping[str, bytes], arch: str = "x86_64"
) -> tuple[list[str], dict[str, ElfInfo]]:
    """Inspect every ELF among ``files`` (package path -> content).

    Returns (problems, infos): one line per reason a file would not load on Lambda's runtime
    (named file, library or symbol version), and what was read from each ELF.
    """
    out: list[str] = []
    infos: dict[str, ElfInfo] = {}
    for path in sorted(files):
        data = files[path]
        if not is_elf(data):
            continue
        try:
            info = read_elf(data, path)
        except ElfError as exc:
            out.append(str(exc))
            continue
        infos[path] = info
        out.extend(_version_problems(path, info, arch))
    out.extend(_library_problems(infos, files))
    return out, infos
