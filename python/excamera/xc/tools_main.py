"""``python -m excamera.xc.tools_main TOOL ARGS...``: run an xc tool with *this* interpreter.

Console scripts such as ``xc-dump`` run whichever checkout they were installed from. A worker
that must run the code it was launched with (a test of a worktree, a Lambda bundle) calls the
tools through this module with its own ``sys.executable`` instead, so the tested code is the
code that runs.
"""

from __future__ import annotations

import importlib
import io
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

# tool name -> (module, entry-point function): the console scripts of pyproject.toml.
TOOLS: dict[str, tuple[str, str]] = {
    "xc-dump": ("excamera.xc.tools", "xc_dump_main"),
    "comp-states": ("excamera.xc.tools", "comp_states_main"),
    "xc-enc": ("excamera.xc.enc", "main"),
}


def entry_point(tool: str) -> Callable[..., int]:
    """The tool's ``main(argv, *, cwd=None, out=None, err=None)``."""
    module_name, name = TOOLS[tool]
    return getattr(importlib.import_module(module_name), name)


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
    out, err = io.StringIO(), io.StringIO()
    try:
        code = entry_point(argv[0])(argv[1:], cwd=cwd, out=out, err=err)
    except SystemExit as exc:  # argparse's usage errors
        code = 0 if exc.code is None else exc.code if isinstance(exc.code, int) else 2
        err.write(f"{argv[0]}: bad arguments: {' '.join(argv[1:])}\n")
    return ToolRun(int(code), out.getvalue(), err.getvalue())


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: python -m excamera.xc.tools_main TOOL ARGS...\ntools: {', '.join(TOOLS)}")
        return 0 if args else 2
    tool, rest = args[0], args[1:]
    if tool not in TOOLS:
        print(f"tools_main: unknown tool {tool!r} (known: {', '.join(TOOLS)})", file=sys.stderr)
        return 2
    sys.argv = [tool, *rest]
    return int(entry_point(tool)(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
