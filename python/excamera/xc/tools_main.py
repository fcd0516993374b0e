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
import sys
from collections.abc import Callable

# tool name -> (module, candidate entry-point function names, tried in order)
TOOLS: dict[str, tuple[str, tuple[str, ...]]] = {
    "xc-dump": ("excamera.xc.tools", ("xc_dump_main",)),
    "comp-states": ("excamera.xc.tools", ("comp_states_main",)),
    "xc-enc": ("excamera.xc.enc", ("main", "xc_enc_main")),
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
