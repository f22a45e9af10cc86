"""What a protocol run returns to the launcher, and the final table printed from it.

The protocol runner (``capc.parties.orchestrate.run_protocol``) builds an
:class:`ExperimentResult`; the launcher prints :func:`format_table` and stores
:meth:`ExperimentResult.to_json` as ``results.json`` in the run directory.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class QueryRow:
    """One query: its id, the label the QP obtained (None if Confident-GNMax did not answer),
    the ground truth (None if unknown), and the seconds spent per step (e.g. ``{"1a": 2.1}``)."""

    query_id: int
    label: int | None
    true_label: int | None
    step_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def answered(self) -> bool:
        """True if the QP got a label for this query."""
        return self.label is not None


@dataclass
class PrivacySummary:
    """Privacy spent by the querying party ``qp_id`` at the end of the run.

    ``epsilon`` is the (epsilon, delta)-DP cost so far; ``data_independent`` says whether the
    bound is the data-independent one used on the crypto path (the data-dependent bound needs the
    histogram and is only offered in simulation); ``note`` carries anything else to print.
    """

    qp_id: int
    epsilon: float
    delta: float
    budget_eps: float
    answered: int
    queries: int
    data_independent: bool = True
    note: str = ""


@dataclass
class ExperimentResult:
    """Everything a run produced: per-query rows, privacy summary, totals.

    ``plaintext`` marks a ``--cpu`` simulation (no encryption); ``totals`` holds run-wide seconds
    (e.g. ``{"setup": 1.2, "total": 30.5}``).
    """

    rows: list[QueryRow]
    privacy: PrivacySummary | None
    totals: dict[str, float] = field(default_factory=dict)
    plaintext: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def answered(self) -> int:
        """How many queries got a label."""
        return sum(r.answered for r in self.rows)

    @property
    def correct(self) -> int:
        """Answered queries whose label equals a known true label."""
        return sum(1 for r in self.rows
                   if r.answered and r.true_label is not None and r.label == r.true_label)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form, as stored in ``results.json``."""
        out = asdict(self)
        out["answered"] = self.answered
        out["correct"] = self.correct
        return out


def _fmt_seconds(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.3f}"


def format_table(result: ExperimentResult, run_id: str | None = None) -> str:
    """The final report: labels next to ground truth, per-step seconds, privacy spent."""
    steps: list[str] = []
    for row in result.rows:
        for step in row.step_seconds:
            if step not in steps:
                steps.append(step)
    mode = ("PLAINTEXT SIMULATION (--cpu): nothing was encrypted" if result.plaintext
            else "CKKS encryption + garbled-circuit 2PC")
    lines = [f"capc run {run_id or ''} -- {mode}".replace("  ", " ")]
    header = ["query", "label", "true", "match"] + [f"{s} s" for s in steps] + ["total s"]
    body = []
    for row in result.rows:
        if not row.answered:
            match = "not answered"
        elif row.true_label is None:
            match = "?"
        else:
            match = "yes" if row.label == row.true_label else "no"
        total = sum(row.step_seconds.values()) if row.step_seconds else None
        body.append([str(row.query_id), "-" if row.label is None else str(row.label),
                     "?" if row.true_label is None else str(row.true_label), match]
                    + [_fmt_seconds(row.step_seconds.get(s)) for s in steps]
                    + [_fmt_seconds(total)])
    widths = [max(len(h), *(len(b[i]) for b in body)) if body else len(h)
              for i, h in enumerate(header)]
    lines.append("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    lines.extend("  ".join(c.rjust(w) for c, w in zip(b, widths)) for b in body)
    n = len(result.rows)
    known = sum(1 for r in result.rows if r.answered and r.true_label is not None)
    summary = f"answered {result.answered}/{n}"
    if known:
        summary += f"; correct {result.correct}/{known} ({100.0 * result.correct / known:.1f}%)"
    lines.append(summary)
    if steps and n:
        means = []
        for s in steps:
            vals = [r.step_seconds[s] for r in result.rows if s in r.step_seconds]
            means.append(f"{s} {sum(vals) / len(vals):.3f}")
        lines.append("mean seconds per step: " + ", ".join(means))
    p = result.privacy
    if p is None:
        lines.append("privacy spent: not reported by the protocol")
    else:
        bound = "data-independent bound" if p.data_independent else \
            "data-dependent bound (simulation only)"
        lines.append(f"privacy spent by QP {p.qp_id}: epsilon = {p.epsilon:.4g} at delta = "
                     f"{p.delta:g} (budget {p.budget_eps:g}; {p.answered}/{p.queries} answered; "
                     f"{bound})")
        if p.note:
            lines.append(f"  {p.note}")
    if result.totals:
        lines.append("totals: " + ", ".join(f"{k} {v:.3f} s" for k, v in result.totals.items()))
    lines.extend(result.notes)
    return "\n".join(lines)
