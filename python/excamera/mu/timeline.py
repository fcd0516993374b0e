"""Timeline plots of a job from its ``-O`` transitions file, like the ExCamera paper's figures.

Each worker is one horizontal bar; the bar is cut into segments, one per state the worker was
in, coloured by that state (the job's phase). Time runs left to right in seconds from the job's
start, so waiting (a wavefront, stragglers) shows up as long segments of the waiting colour.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from pathlib import Path

from .machines import Transition

TERMINAL_STATES = ("done", "error", "lost")


def load_transitions(path: Path) -> list[Transition]:
    """Parse a JSON-lines file; ValueError naming the line if one is malformed."""
    out: list[Transition] = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                if isinstance(obj, dict) and "cost" in obj and "worker" not in obj:
                    continue  # the job's cost record, written after the transitions
                out.append(Transition(int(obj["worker"]), int(obj.get("attempt", 0)),
                                      str(obj["state"]), float(obj["t"])))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{n}: not a transition record: {exc}") from None
    if not out:
        raise ValueError(f"{path}: no transitions")
    return out


def segments(transitions: list[Transition]) -> dict[int, list[tuple[str, float, float]]]:
    """Per worker, (state, start, end) for every state it was in, in time order.

    A worker's last (terminal) state has no duration and is not a segment.
    """
    by_worker: dict[int, list[Transition]] = defaultdict(list)
    for tr in transitions:
        by_worker[tr.worker].append(tr)
    out: dict[int, list[tuple[str, float, float]]] = {}
    for k, trs in by_worker.items():
        trs.sort(key=lambda tr: tr.t)
        out[k] = [(a.state, a.t, b.t) for a, b in zip(trs, trs[1:], strict=False)]
    return out


def phase_of(state: str) -> str:
    """The phase a state belongs to, for colouring: per-pass states such as ``reencode_p2`` or
    ``sent_s1`` share their phase's colour (``reencode``, ``sent``), as in ExCamera's plots."""
    return re.sub(r"_[ps]\d+$", "", state)


def plot_timeline(transitions: list[Transition], out_path: Path | None = None,
                  title: str = "") -> object:
    """Draw the timeline; saves a PNG if ``out_path`` is given; returns the matplotlib Figure."""
    from .. import needs

    matplotlib = needs.module("matplotlib", "plot", "the timeline plot")

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    segs = segments(transitions)
    workers = sorted(segs)
    phases: list[str] = []
    for tr in sorted(transitions, key=lambda tr: tr.t):
        ph = phase_of(tr.state)
        if ph not in phases and tr.state not in TERMINAL_STATES:
            phases.append(ph)
    cmap = plt.get_cmap("tab20")
    colour = {ph: cmap(i % 20) for i, ph in enumerate(phases)}
    # Tall enough for one row per worker and for the legend beside the plot.
    height = max(2.5, min(0.18 * len(workers) + 1.5, 40.0), 0.22 * len(phases) + 1.0)
    fig, ax = plt.subplots(figsize=(10, height))
    for row, k in enumerate(workers):
        parts = [(s, a, b) for s, a, b in segs[k] if b > a or s]
        if not parts:
            continue
        ax.barh(
            [row] * len(parts),
            [b - a for _, a, b in parts],
            left=[a for _, a, _ in parts],
            color=[colour.get(phase_of(s), "black") for s, _, _ in parts],
            height=0.8,
            linewidth=0,
        )
    ax.set_xlabel("seconds since job start")
    ax.set_ylabel("worker")
    if len(workers) <= 40:
        ax.set_yticks(range(len(workers)), [str(k) for k in workers])
    ax.set_xlim(left=0)
    ax.set_ylim(-0.6, len(workers) - 0.4)
    ax.invert_yaxis()
    ax.set_title(title or f"{len(workers)} workers")
    ax.legend(handles=[Patch(color=colour[ph], label=ph) for ph in phases],
              loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    fig.tight_layout()
    if out_path is not None:
        fig.savefig(out_path, dpi=100)
    return fig
