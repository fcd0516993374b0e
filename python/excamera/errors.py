"""The one exception type that excamera's commands and its Python API raise (no imports
beyond the standard library's cheapest: every command's start-up loads this module).

:class:`ExcameraError` says what failed in one line (``str(exc)``); anything longer, such as
each failed worker of a job with its stderr tail, goes to ``exc.details``. The command line
prints both and exits 1, never a traceback. ``CommandError`` is the same class under the name
the commands' code uses.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself imports re
if TYPE_CHECKING:
    # collections.abc imports collections (about a millisecond of every command's start-up)
    from collections.abc import Mapping


class ExcameraError(Exception):
    """A failure to report in one line (``str``) plus optional further lines (``details``).

    A message of several lines is split: its first line is the message, the rest goes before
    ``details``. ``cost`` is what a failed job had cost (a ``Cost``), when it got that far.
    """

    def __init__(self, message: object = "", details: str = "") -> None:
        head, _, rest = str(message).partition("\n")
        super().__init__(head)
        self.details = "\n".join(part for part in (rest, details) if part)
        self.cost: object = None

    def report(self) -> str:
        """The message and its details, as the command line prints them."""
        return "\n".join(part for part in (str(self), self.details) if part)


CommandError = ExcameraError


class SettingsError(ExcameraError):
    """A setting with a value it cannot take, named by its keyword (``port``) in the Python API
    and by its flag (``-t``) on the command line.

    ``template`` holds one ``{}`` per name in ``names``; :meth:`render` fills them in.
    """

    def __init__(self, template: str, *names: str) -> None:
        self.template = template
        self.names = names
        super().__init__(self.render({}))

    def render(self, labels: Mapping[str, str]) -> str:
        return self.template.format(*(labels.get(n, n) for n in self.names))

    @classmethod
    def value(cls, name: str, value: object, rule: str) -> SettingsError:
        """``NAME VALUE: rule``, the form every range check uses."""
        text = f"{value:g}" if isinstance(value, float) else str(value)
        return cls("{} " + f"{text}: {rule}".replace("{", "{{").replace("}", "}}"), name)
