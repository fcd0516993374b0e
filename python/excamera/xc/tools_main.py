"""``python -m excamera.xc.tools_main TOOL ARGS...``: run an xc tool with *this* interpreter.

Console scripts such as ``xc-dump`` run whichever checkout they were installed from. A worker
that must run the code it was launched with (a test of a worktree, a Lambda bundle) calls the
tools through this module with its own ``sys.executable`` instead, so the tested code is the
code that runs. ``--has TOOL`` exits 0 when the tool is present in this checkout, 1 when not:
the encoder ``xc-enc`` is optional until it is built, and jobs ask before relying on it.
"""

from __future__ import annotations

import importlib
import inspect
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# tool name -> (module, candidate entry-point function names, tried in order)
TOOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "xc-dump": ("excamera.xc.tools", ("xc_dump_main",)),
    "comp-states": ("excamera.xc.tools", ("comp_states_main",)),
    "xc-enc": ("excamera.xc.enc", ("main",)),
}


def entry_point(tool: str) -> Callable[..., int] | None:
    """The tool's ``main(argv)``, or None when this checkout does not have it."""
    spec = TOOLS.get(tool)
    if spec is None:
        return None
    module_name, names = spec
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and module_name.startswith(exc.name):
            return None
        raise
    for name in names:
        fn = getattr(module, name, None)
        if callable(fn):
            return fn
    return None


@dataclass(frozen=True)
class ToolRun:
    """What a tool run in process printed and returned, as a ``run`` command reports it."""

    exit_code: int
    stdout: str
    stderr: str


def run_in_process(argv: list[str], cwd: Path) -> ToolRun:
    """Run ``TOOL ARGS...`` in this interpreter, with relative paths taken from ``cwd``.

    A worker that already has the codec loaded saves a Python start-up per step this way
    (about 0.2 s, far more than a rebase of a small chunk). The tool writes to its own
    buffers, never to the process's streams, so the worker's other threads are unaffected.
    """
    if not argv or argv[0] not in TOOLS:
        raise ValueError(f"unknown tool {argv[0] if argv else ''!r} (known: {', '.join(TOOLS)})")
    fn = entry_point(argv[0])
    if fn is None:
        return ToolRun(127, "", f"{argv[0]}: not available in this checkout\n")
    out, err = io.StringIO(), io.StringIO()
    try:
        code = fn(argv[1:], cwd=cwd, out=out, err=err)
    except SystemExit as exc:  # argparse's usage errors
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
        err.write(f"{argv[0]}: bad arguments: {' '.join(argv[1:])}\n")
    return ToolRun(int(code), out.getvalue(), err.getvalue())


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: python -m excamera.xc.tools_main TOOL ARGS... | --has TOOL\n"
              f"tools: {', '.join(TOOLS)}")
        return 0 if args else 2
    if args[0] == "--has":
        return 0 if len(args) == 2 and entry_point(args[1]) is not None else 1
    tool, rest = args[0], args[1:]
    if tool not in TOOLS:
        print(f"tools_main: unknown tool {tool!r} (known: {', '.join(TOOLS)})", file=sys.stderr)
        return 2
    fn = entry_point(tool)
    if fn is None:
        print(f"{tool}: not available in this checkout ({TOOLS[tool][0]} is not built yet)",
              file=sys.stderr)
        return 127
    sys.argv = [tool, *rest]
    # Entry points either take argv (like xc_dump_main) or read sys.argv themselves.
    takes_argv = bool(inspect.signature(fn).parameters)
    return int((fn(rest) if takes_argv else fn()) or 0)


if __name__ == "__main__":
    sys.exit(main())
