"""``python -m excamera``: the ``excamera`` command (also usable as ``python -I -m excamera``,
which keeps the current directory and PYTHON* variables off the import path)."""

import sys

from excamera.cli import main

sys.exit(main())
