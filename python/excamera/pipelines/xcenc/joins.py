"""Which of a finished xcenc job's joins are exact, from what its workers reported.

The join of chunks k-1 and k is exact when chunk k's final output was encoded against the very
state chunk k-1's final output ends on, or starts with a key frame. The plan says which state
that was meant to be (``XcencParams.join``); the workers' hashes say whether it was: the state
chunk k's final pass rebased onto (``last_input``) against the one chunk k-1 ended on
(``final_state``). A wavefront join onto an earlier state is exact only when the predecessor
converged; comp-states' count of differing bits is quoted from its report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .plan import JOIN_KEY, XcencParams, join_names


@dataclass(frozen=True)
class Joins:
    """The verdict on every join of a job: ``exact`` and ``inexact`` hold the successor's worker
    number ``k`` of each join ``k-1|k``; ``bits`` comp-states' count for an inexact join."""

    params: XcencParams
    exact: list[int]
    inexact: list[int]
    bits: dict[int, str]

    @property
    def stitchable_through(self) -> int:
        """The last chunk (worker number) up to which the chunks decode as encoded when joined
        in order: the one before the first inexact join."""
        return (self.inexact[0] - 1) if self.inexact else self.params.n_parts - 1

    def summary(self) -> str:
        """The summary line the command ends with."""
        p = self.params
        total = p.n_parts - 1
        if total == 0:
            return "xcenc: joins: none (one chunk)"
        parts = []
        if self.exact:
            parts.append(f"exact {join_names(p, self.exact)} ({len(self.exact)} of {total})")
        if self.inexact:
            parts.append(f"NOT exact {join_names(p, self.inexact)} ({len(self.inexact)} of "
                         f"{total}; comp-states bits differing in the predecessor: "
                         + ", ".join(f"{k - 1 + p.offset}: {self.bits[k]}"
                                     for k in self.inexact) + ")")
        return "xcenc: joins " + "; ".join(parts)

    def error(self) -> str | None:
        """The one error line of a job with inexact joins (None when all are exact)."""
        if not self.inexact:
            return None
        p = self.params
        last = self.stitchable_through + p.offset
        return (f"joins {join_names(p, self.inexact)} are not exact: rebased states did not "
                f"converge (see {p.vid_name}/comp_txt/); every chunk is uploaded, but chunks "
                f"after {last} do not decode as encoded when stitched")


def judge_joins(params: XcencParams, outputs: dict[int, dict[str, Any]]) -> Joins:
    """The verdict on each join, from the workers' outputs (keyed by worker number)."""
    exact: list[int] = []
    inexact: list[int] = []
    bits: dict[int, str] = {}
    for k in range(1, params.n_parts):
        if params.join(k).kind == JOIN_KEY:
            exact.append(k)
            continue
        onto, ended = outputs[k]["last_input"], outputs[k - 1]["final_state"]
        if onto is not None and onto == ended:
            exact.append(k)
        else:
            inexact.append(k)
            comp = str(outputs[k - 1].get("comp") or "").split()
            bits[k] = comp[0] if comp else "?"
    return Joins(params, exact, inexact, bits)
