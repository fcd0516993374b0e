"""The ``excamera`` command's table and what its start-up imports.

``excamera --help`` lists every subcommand from the table in ``excamera.cli`` without importing
their modules, and a command line imports only the module it names. These tests hold the
table's help lines equal to what each module registers, and check, in fresh interpreters, which
modules the quick commands load: start-up time is mostly imports (numpy, cryptography, asyncio
and importlib.metadata cost tens of milliseconds each), and the sets of modules, unlike
timings, do not depend on the machine's load.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from _shared_paths import vectors_dir
from excamera.cli import ALL, SUBCOMMANDS, build_parser

PYTHON_DIR = Path(__file__).resolve().parent.parent / "python"
HEAVY = ["numpy", "cryptography", "asyncio", "importlib.metadata", "excamera.mu",
         "excamera.pipelines", "excamera.metrics", "dataclasses", "typing"]


def loaded_by(code: str, argv: list[str]) -> set[str]:
    """Modules loaded by ``code`` (which sets ``rc``) in a fresh interpreter given ``argv``."""
    code += "\nprint(json.dumps([rc, sorted(sys.modules)]), file=sys.stderr)\n"
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR)}
    done = subprocess.run([sys.executable, "-c", f"import json, sys\n{code}", *argv],
                          capture_output=True, text=True, env=env, timeout=120)
    rc, modules = json.loads(done.stderr.strip().splitlines()[-1])
    assert rc == 0, done.stderr
    return set(modules)


def loaded_after(argv: list[str]) -> set[str]:
    """Modules loaded by running ``excamera ARGV`` (exit code 0)."""
    return loaded_by("from excamera.cli import main\ntry:\n    rc = main(sys.argv[1:])\n"
                     "except SystemExit as e:\n    rc = e.code", argv)


def registered_help(name: str) -> str:
    parser = build_parser(ALL)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return next(c.help for c in sub._choices_actions if c.dest == name)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_table_help_is_what_the_module_registers(name: str) -> None:
    assert SUBCOMMANDS[name][1] == registered_help(name)


@pytest.mark.parametrize("name", SUBCOMMANDS)
def test_a_command_builds_only_its_own_parser(name: str) -> None:
    """Running it loads no other subcommand's module than its own module imports itself."""
    module = SUBCOMMANDS[name][0]
    loaded = loaded_after([name, "--help"])
    assert module in loaded
    own = loaded_by(f"import {module}\nrc = 0", [])
    assert not (loaded - own) & {m for m, _ in SUBCOMMANDS.values()}


def test_help_imports_no_subcommand_and_nothing_heavy() -> None:
    loaded = loaded_after(["--help"])
    assert not loaded & {m for m, _ in SUBCOMMANDS.values()}
    assert not [m for m in loaded if m.startswith(tuple(HEAVY))]


def test_decode_imports_nothing_heavy(tmp_path: Path) -> None:
    vector = vectors_dir() / "vp80-00-comprehensive-001.ivf"
    loaded = loaded_after(["decode", str(vector), "-o", str(tmp_path / "out.y4m")])
    assert "excamera._xc" in loaded  # it did decode
    assert (tmp_path / "out.y4m").stat().st_size > 0
    assert not [m for m in loaded if m.startswith(tuple(HEAVY))]
    # PyAV only for a WebM input, numpy only to --scale, hashlib only for --md5.
    assert not {"av", "hashlib", "excamera.xc.scale"} & loaded
    # A plain command line is parsed without argparse; writing to a device (as a speed check
    # does: -o /dev/null) imports neither pathlib nor re. Together about 20 ms, a seventh of
    # vpxdec's whole decode of 250 640x272 frames.
    assert "argparse" not in loaded
    # (loaded_after's harness imports json, which imports re: this one prints a repr.)
    code = ("import sys\nfrom excamera.cli import main\nrc = main(sys.argv[1:])\n"
            "print(repr(sorted(sys.modules)), file=sys.stderr)\nsys.exit(rc)")
    done = subprocess.run([sys.executable, "-c", code, "decode", str(vector), "-o", os.devnull],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(PYTHON_DIR)})
    assert done.returncode == 0, done.stderr
    to_null = set(ast.literal_eval(done.stderr.strip().splitlines()[-1]))
    assert "excamera._xc" in to_null
    assert not {"argparse", "pathlib", "re"} & to_null
    # Nor collections (with contextlib, functools), nor importlib (with warnings): about 3 ms.
    assert not {"collections", "contextlib", "functools", "importlib", "warnings"} & to_null
    # Nor types (SimpleNamespace), nor math or struct, each a shared library to load.
    assert not {"types", "math", "struct"} & to_null


def test_decode_md5_of_frames_imports_nothing_heavy() -> None:
    vector = vectors_dir() / "vp80-00-comprehensive-001.ivf"
    loaded = loaded_after(["decode", "--md5", "--i420", "-o", "%wx%h-%4", str(vector)])
    assert "hashlib" in loaded  # it did hash
    assert "av" not in loaded
    assert not [m for m in loaded if m.startswith(tuple(HEAVY))]


def test_a_worker_starts_without_numpy_cryptography_or_package_metadata() -> None:
    """A worker process (one per chunk with --worker-processes 0, on Lambda, on Ray) and a
    worker host load the runtime and the xcenc job's operations only; numpy waits for a tool
    that needs pictures, and TLS needs only ssl."""
    loaded = loaded_by("import excamera.mu.worker, excamera.mu.workerhost, "
                       "excamera.pipelines.xcenc.ops\nrc = 0", [])
    assert "excamera.mu.worker" in loaded
    assert not {"numpy", "cryptography", "importlib.metadata", "excamera.metrics"} & loaded


@pytest.mark.parametrize(("module", "tool"), [("excamera.xc.enc", "main"),
                                              ("excamera.xc.tools", "xc_dump_main"),
                                              ("excamera.xc.tools", "comp_states_main")])
def test_the_xc_tools_help_imports_nothing_heavy(module: str, tool: str) -> None:
    """xc-enc, xc-dump and comp-states are processes of their own too (mu ran them so)."""
    loaded = loaded_by(f"from {module} import {tool}\ntry:\n    rc = {tool}(['--help'])\n"
                       "except SystemExit as e:\n    rc = e.code", [])
    assert module in loaded
    assert not [m for m in loaded if m.startswith(tuple(HEAVY))]


def test_decode_fast_parser_agrees_with_argparse() -> None:
    """``excamera decode``'s plain command lines skip argparse (its imports cost a short decode
    a tenth of its time): on every command line the fast parser accepts, argparse gives the same
    namespace, and it gives way to argparse on anything else."""
    import contextlib
    import io
    import random

    from excamera.xc.decode_cmd import parse_fast

    parser = build_parser("decode")
    words = ["in.ivf", "b.webm", "-", "", "x y", "-o", "--output", "--output=o.y4m", "-o=%4.yuv",
             "--output=", "-ofile", "--out", "--i420", "--rawvideo", "--md5", "--md5=1",
             "--limit", "--limit=3", "--skip", "--skip=+2", "5", "-3", " 7", "07", "1_0", "x",
             "-S", "--scale", "-Sx", "--state", "--state=s.state", "s.state", "--", "-h",
             "--help", "decode", "-i"]
    rng = random.Random(12)
    lines = [[rng.choice(words) for _ in range(rng.randrange(7))] for _ in range(3000)]
    lines += [["in.ivf", "-o", "/dev/null"], ["-o", "-", "in.ivf", "--i420", "--limit", "3"],
              ["in.ivf", "--md5", "--skip=2", "-S", "--state", "s.state"]]
    accepted = 0
    for argv in lines:
        fast = parse_fast(argv)
        with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
            try:
                slow = vars(parser.parse_args(["decode", *argv]))
            except SystemExit:
                slow = None
        if fast is not None:
            accepted += 1
            assert vars(fast) == slow, argv
    assert all(parse_fast(argv) is not None for argv in lines[-3:])
    assert accepted > 200  # 284 with this seed: the test compares something


# Ends a process as the console script does, with an object whose finalizer says whether the
# interpreter's finalization ran (it clears __main__'s globals), and with an atexit function
# when asked.
_FINALIZED = """import atexit, os, sys
from excamera.cli import main
class Witness:
    def __del__(self):
        os.write(2, b"finalized\\n")
witness = Witness()
if os.environ.get("WITH_ATEXIT"):
    atexit.register(lambda: os.write(2, b"atexit ran\\n"))
sys.exit(main())
"""


@pytest.mark.parametrize("atexit_fn", [False, True])
def test_decode_skips_finalization_unless_something_is_left_to_run(tmp_path: Path,
                                                                   atexit_fn: bool) -> None:
    """After a decode the process ends without the interpreter's finalization (about 2.5 ms of
    CPU), with the same exit status and output, on success and on failure; with an atexit
    function registered, finalization and the function run as before."""
    vector = vectors_dir() / "vp80-00-comprehensive-001.ivf"
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR), "WITH_ATEXIT": "1" if atexit_fn else ""}
    runs = {"ok": ["decode", str(vector), "-o", os.devnull],
            "md5": ["decode", "--md5", "--limit", "2", str(vector)],
            "bad": ["decode", str(tmp_path / "missing.ivf"), "-o", os.devnull]}
    done = {k: subprocess.run([sys.executable, "-c", _FINALIZED, *argv], capture_output=True,
                              text=True, timeout=120, env=env) for k, argv in runs.items()}
    assert [done[k].returncode for k in runs] == [0, 0, 1]
    # The MD5 line (block-buffered into a pipe) was flushed before the process ended.
    assert done["md5"].stdout.endswith("  -\n") and len(done["md5"].stdout.split()[0]) == 32
    assert "missing.ivf: cannot open" in done["bad"].stderr
    for k in runs:
        lines = done[k].stderr.splitlines()
        assert ("finalized" in lines) == atexit_fn, (k, lines)
        assert ("atexit ran" in lines) == atexit_fn, (k, lines)


def test_other_commands_and_in_process_calls_end_as_usual() -> None:
    """Only decode asks to skip finalization, and main() given its arguments returns."""
    env = {**os.environ, "PYTHONPATH": str(PYTHON_DIR)}
    done = subprocess.run([sys.executable, "-c", _FINALIZED, "--help"], capture_output=True,
                          text=True, timeout=120, env=env)
    assert done.returncode == 0 and "finalized" in done.stderr.splitlines()
    vector = vectors_dir() / "vp80-00-comprehensive-001.ivf"
    code = _FINALIZED.replace("sys.exit(main())", f"rc = main(['decode', {str(vector)!r}, "
                              "'-o', os.devnull])\nos.write(2, b'returned %d\\n' % rc)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=env)
    assert done.stderr.splitlines() == ["returned 0", "finalized"]
