"""Backends start workers: local processes, AWS Lambda invocations, Ray tasks, in-process tasks.

The registry is this package itself: every module here that defines a :class:`Backend` subclass
with its own ``name`` is a backend, so adding one is adding one file. Backend modules import
their heavy dependencies (boto3, ray) only when a backend is built, so listing them is cheap.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
from collections.abc import Mapping
from typing import Any

from .base import Backend, BackendError, Cost, WorkerProcess
from .inprocess import InProcessBackend
from .local import LocalBackend

__all__ = [
    "Backend", "BackendError", "Cost", "InProcessBackend", "LocalBackend", "WorkerProcess",
    "add_backend_options", "backend_class", "backends", "chosen_backend", "make_backend",
]

DEFAULT = "local"
_NOT_BACKENDS = {"base"}


def backends() -> dict[str, type[Backend]]:
    """Every backend in this package by name, in a stable order."""
    found: dict[str, type[Backend]] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name in _NOT_BACKENDS or info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        for obj in vars(module).values():
            if (isinstance(obj, type) and issubclass(obj, Backend) and obj is not Backend
                    and obj.__module__ == module.__name__ and "name" in vars(obj)):
                found[obj.name] = obj
    return found


def backend_class(name: str) -> type[Backend]:
    table = backends()
    if name not in table:
        raise BackendError(f"unknown backend {name!r} (have: {', '.join(sorted(table))})")
    return table[name]


class _Recorder:
    """Passes ``add_argument`` through to a group and remembers which options it added."""

    def __init__(self, group: argparse._ArgumentGroup, owned: list[argparse.Action]) -> None:
        self._group = group
        self._owned = owned

    def add_argument(self, *args: Any, **kwargs: Any) -> argparse.Action:
        action = self._group.add_argument(*args, **kwargs)
        self._owned.append(action)
        return action


#: Each backend's own options, as the parser that ``add_backend_options`` built holds them.
_OPTIONS: dict[str, list[argparse.Action]] = {}


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--backend NAME`` and every backend's own options, in one group each.

    Giving a backend's own option selects that backend (mu's ``-l FUNCTION`` means Lambda), and
    giving one that belongs to another backend than ``--backend`` is an error, so no option is
    ever silently ignored.
    """
    table = {k: v for k, v in backends().items() if v.cli}
    g = parser.add_argument_group("backend")
    g.add_argument("--backend", choices=sorted(table), default=None,
                   help=f"where workers run ({DEFAULT}; a backend's own option selects it)")
    for name in sorted(table):
        owned: list[argparse.Action] = []
        table[name].add_arguments(
            _Recorder(parser.add_argument_group(f"{name} backend"), owned))  # type: ignore[arg-type]
        _OPTIONS[name] = owned


def _given(options: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per backend, its own options that were given a value other than their default."""
    out: dict[str, list[str]] = {}
    for name, actions in _OPTIONS.items():
        for a in actions:
            if a.dest in options and options[a.dest] != a.default:
                out.setdefault(name, []).append("/".join(a.option_strings))
    return out


def make_backend(name: str | None, options: Mapping[str, Any]) -> Backend:
    """The backend ``name`` (or the one whose own options were given), built from ``options``."""
    return chosen_backend(name, options).from_options(options)


def chosen_backend(name: str | None, options: Mapping[str, Any]) -> type[Backend]:
    """The class :func:`make_backend` builds, without building it (which may import a heavy
    package or reach a cluster)."""
    given = _given(options)
    if name is None:
        if len(given) > 1:
            raise BackendError("options of several backends given: " + "; ".join(
                f"{', '.join(opts)} ({b})" for b, opts in sorted(given.items())))
        name = next(iter(given), DEFAULT)
    for other, opts in given.items():
        if other != name:
            raise BackendError(f"{', '.join(opts)} belong(s) to the {other} backend, not "
                               f"--backend {name}")
    return backend_class(name)
