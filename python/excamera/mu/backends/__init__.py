"""Backends start workers: local subprocesses, in-process tasks (tests), later Lambda or Ray."""

from .base import Backend, WorkerProcess
from .inprocess import InProcessBackend
from .local import LocalBackend

__all__ = ["Backend", "InProcessBackend", "LocalBackend", "WorkerProcess"]
