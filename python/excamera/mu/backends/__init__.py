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
from dataclasses import dataclass, field
from typing import Any

from .base import Backend, BackendError, Cost, WorkerProcess
from .inprocess import InProcessBackend
from .local import LocalBackend

__all__ = [
    "Backend", "BackendError", "BackendSpec", "Cost", "InProcessBackend", "LocalBackend",
    "WorkerProcess", "add_backend_choice", "add_backend_options", "backend_class", "backends",
    "chosen_backend", "given_options", "make_backend", "option_actions", "resolve_backend",
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


def option_actions(name: str) -> list[argparse.Action]:
    """The options backend ``name`` declares (``add_arguments``), as argparse actions."""
    if name not in _ACTIONS:
        scratch = argparse.ArgumentParser(add_help=False)
        backend_class(name).add_arguments(scratch.add_argument_group(name))
        _ACTIONS[name] = [a for a in scratch._actions if a.option_strings]
    return _ACTIONS[name]


_ACTIONS: dict[str, list[argparse.Action]] = {}


def add_backend_options(parser: argparse.ArgumentParser, *, choice: bool = True) -> None:
    """``--backend NAME`` (in a group of its own; ``choice=False`` leaves it to the caller,
    see :func:`add_backend_choice`) and every backend's own options, in one group per backend.

    Giving a backend's own option selects that backend (mu's ``-l FUNCTION`` means Lambda), and
    giving one that belongs to another backend than ``--backend`` is an error, so no option is
    ever silently ignored (see :func:`make_backend`).
    """
    if choice:
        add_backend_choice(parser.add_argument_group("backend"))
    for name, cls in backends().items():
        if cls.cli:
            cls.add_arguments(parser.add_argument_group(f"{name} backend"))


def add_backend_choice(container: argparse._ActionsContainer) -> None:
    """``--backend NAME``, into ``container`` (a parser or one of its groups)."""
    names = sorted(k for k, v in backends().items() if v.cli)
    container.add_argument("--backend", choices=names, default=None,
                           help=f"where workers run ({DEFAULT}; a backend's own option "
                           "selects it)")


def given_options(values: Mapping[str, Any]) -> dict[str, Any]:
    """The backends' options among ``values`` (parsed flags by dest) that were given a value
    other than their default: what the command line passes to :func:`make_backend`."""
    out: dict[str, Any] = {}
    for name, cls in backends().items():
        if not cls.cli:
            continue
        for a in option_actions(name):
            if a.dest in values and values[a.dest] != a.default:
                out[a.dest] = values[a.dest]
    return out


def _owners(options: Mapping[str, Any]) -> dict[str, list[str]]:
    """Per backend, which of ``options`` (by key) are its own; unknown keys are an error."""
    owner: dict[str, str] = {}
    flags: dict[str, str] = {}
    for name in backends():
        for a in option_actions(name):
            owner[a.dest] = name
            flags[a.dest] = "/".join(a.option_strings)
    out: dict[str, list[str]] = {}
    for key in options:
        if key not in owner:
            raise BackendError(f"{key!r} is no backend's option (have: {', '.join(sorted(owner))})")
        out.setdefault(owner[key], []).append(flags[key])
    return out


def make_backend(name: str | None, options: Mapping[str, Any] | None = None) -> Backend:
    """The backend ``name``, or when None the one whose options are given (else the default),
    built with its ``from_options(options)``.

    ``options`` are keyed by the options' dests (``lambda_function``, ``ray_address``, ...) and
    hold only values that were chosen, so an option of another backend than ``name``, or of
    several backends at once, or of none, is an error rather than silently ignored.
    """
    options = dict(options or {})
    return chosen_backend(name, options).from_options(options)


def chosen_backend(name: str | None, options: Mapping[str, Any] | None = None) -> type[Backend]:
    """The class :func:`make_backend` builds, without building it (which may import a heavy
    package or reach a cluster)."""
    given = _owners(options or {})
    if name is None:
        if len(given) > 1:
            raise BackendError("options of several backends given: " + "; ".join(
                f"{', '.join(opts)} ({b})" for b, opts in sorted(given.items())))
        name = next(iter(given), DEFAULT)
    cls = backend_class(name)
    for other, opts in given.items():
        if other != name:
            raise BackendError(f"{', '.join(opts)} belong(s) to the {other} backend, not "
                               f"--backend {name}")
    return cls


@dataclass(frozen=True)
class BackendSpec:
    """A backend not built yet: its name (None: chosen by its options, else the default) and
    the chosen values of its own options, keyed by dest."""

    name: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)

    def build(self) -> Backend:
        return make_backend(self.name, self.options)


def resolve_backend(backend: Backend | BackendSpec | str | None,
                    options: Mapping[str, Any] | None = None) -> Backend:
    """A built backend from what a caller may hand over: an instance (used as it is, for one
    job), a :class:`BackendSpec`, or a name with its options."""
    if isinstance(backend, Backend):
        if options:
            raise BackendError("backend options go with a backend's name, not with a built "
                               f"{backend.name} backend")
        return backend
    if isinstance(backend, BackendSpec):
        if options:
            raise BackendError("backend options go with a backend's name, not with a "
                               "BackendSpec (which holds its own)")
        return backend.build()
    if backend is not None and not isinstance(backend, str):
        raise BackendError(f"backend {backend!r}: expected a name, a BackendSpec or a Backend")
    return make_backend(backend, options)
