"""What an optional part of excamera needs, and one line saying how to get it.

The core install (``pip install excamera``) encodes, decodes, relays and makes keys with local
storage and local workers. The heavier parts are extras (``pyproject.toml``): ``s3`` (boto3),
``plot`` (matplotlib), ``lambda`` (boto3), ``ray``. Each part imports its package through
:func:`module` where it starts, so a missing extra is one line naming the extra to install,
never a traceback from deep inside a job. Likewise :func:`vpxenc` for libvpx's encoder, which
no Python package provides.
"""

from __future__ import annotations

import importlib
import re
import shutil
from types import ModuleType

from .errors import CommandError

#: The Debian (and Ubuntu) package that provides libvpx's vpxenc and vpxdec.
VPX_DEBIAN_PACKAGE = "vpx-tools"


class MissingDependency(CommandError):
    """An optional package or program is not installed (the message says how to install it)."""


def install_hint(extra: str) -> str:
    return f"pip install 'excamera[{extra}]'"


def module(name: str, extra: str, purpose: str) -> ModuleType:
    """Import ``name``, or raise MissingDependency saying that ``purpose`` needs ``extra``.

    Only a missing package counts: any ModuleNotFoundError while importing it (the package or
    one of its own dependencies) means the extra is not (fully) installed. Other import errors
    are real faults and propagate.
    """
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or name
        raise MissingDependency(
            f"{purpose} needs {missing}, which is not installed: {install_hint(extra)}"
        ) from None


def core_module(name: str, purpose: str) -> ModuleType:
    """Import ``name``, one of excamera's own dependencies, or raise MissingDependency naming
    the requirement excamera was installed with (an install made with ``--no-deps``, or a
    package removed since, can lack it)."""
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or name
        raise MissingDependency(f"{purpose} needs {missing}, which is not installed: pip install "
                                f"'{_requirement(missing)}'") from None


def _requirement(name: str) -> str:
    """excamera's requirement on ``name`` as its installed metadata states it (with the
    version bounds), else the bare name."""
    from importlib import metadata

    try:
        requires = metadata.requires("excamera") or []
    except metadata.PackageNotFoundError:
        return name
    for req in requires:
        if ";" not in req and re.match(rf"{re.escape(name)}\b(?![-.])", req):
            return req.replace(" ", "")
    return name


def vpxenc_missing_message(where: str = "on PATH") -> str:
    return (f"libvpx's vpxenc is not installed {where}: install it (Debian and Ubuntu: apt-get "
            f"install {VPX_DEBIAN_PACKAGE}), or encode pass 0 with xc instead (--pass0 xc)")


def vpxenc() -> str:
    """The path of vpxenc on this machine's PATH, or MissingDependency saying how to get it."""
    path = shutil.which("vpxenc")
    if path is None:
        raise MissingDependency(vpxenc_missing_message())
    return path
