"""A results folder for one paper script: a resumable CSV, its summary, a parameters JSON, the figure.

Every per-result script (``scripts/paper/*.py``) writes ``<name>.csv`` (one row per finished
run, flushed as soon as it is written, so a crashed run resumes where it stopped),
``<name>.json`` (the parameters, seeds, library versions, source commit and timings of the run) and
``<name>.png``. Scripts with several seeds per configuration also write ``<name>_summary.csv``:
one row per configuration with ``<metric>_mean`` / ``<metric>_std`` columns over its runs
(:func:`summarise`), recomputed from ``<name>.csv`` at the end of every run.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import statistics
import subprocess
import time
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("capc", "numpy", "scipy", "tensorflow", "keras", "scikit-learn", "matplotlib", "ray"):
        names = (dist, "tensorflow-cpu") if dist == "tensorflow" else (dist,)
        out[dist] = None
        for n in names:
            try:
                out[dist] = metadata.version(n)
                break
            except metadata.PackageNotFoundError:
                continue
    return out


def _source_commit() -> str | None:
    """The git commit of the source tree the code runs from (``+dirty`` with local changes), if any."""
    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        if head.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty else "")


def summarise(rows: Sequence[Mapping[str, Any]], keys: Sequence[str], metrics: Sequence[str]
              ) -> list[dict[str, Any]]:
    """One row per distinct ``keys`` tuple (first-appearance order): the keys, ``n`` (rows in the
    group) and for every metric ``<metric>_mean`` and ``<metric>_std`` (population std, ddof = 0)
    over the group's non-empty values (empty when it has none)."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for r in rows:
        groups.setdefault(tuple(r[k] for k in keys), []).append(r)
    out = []
    for key, group in groups.items():
        row: dict[str, Any] = dict(zip(keys, key))
        row["n"] = len(group)
        for m in metrics:
            vals = [float(r[m]) for r in group if r.get(m) not in (None, "")]
            vals = [v for v in vals if not math.isnan(v)]
            # statistics.pstdev is exact for equal values (0, not 1e-16 of rounding)
            row[f"{m}_mean"] = f"{statistics.fmean(vals):.6g}" if vals else ""
            row[f"{m}_std"] = f"{statistics.pstdev(vals):.6g}" if vals else ""
        out.append(row)
    return out


class ResultsFolder:
    """``out/<name>.{csv,json,png}`` with the CSV columns ``fields``."""

    def __init__(self, out: str | Path, name: str, fields: Sequence[str]) -> None:
        self.dir = Path(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.fields = list(fields)
        self.csv = self.dir / f"{name}.csv"
        self.summary_csv = self.dir / f"{name}_summary.csv"
        self.json = self.dir / f"{name}.json"
        self.png = self.dir / f"{name}.png"
        self._t0 = time.perf_counter()

    def rows(self) -> list[dict[str, str]]:
        """The rows written so far (none before the first run)."""
        if not self.csv.exists():
            return []
        with self.csv.open(newline="") as f:
            return list(csv.DictReader(f))

    def done(self, key: Callable[[Mapping[str, str]], Hashable]) -> set[Hashable]:
        """Keys of the configurations already in the CSV (to skip them when resuming)."""
        return {key(r) for r in self.rows()}

    def write_params(self, args: argparse.Namespace, **extra: Any) -> Path:
        """``<name>.json``: every flag, what ``extra`` adds (seeds, labels, timings), the library
        versions, the source commit and this run's wall time so far (written at the start, so a
        crashed run leaves its parameters, and again at the end with the timings)."""
        data = {"parameters": vars(args), **extra, "versions": _versions(), "source_commit": _source_commit(),
                "written_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                "wall_s_this_invocation": round(time.perf_counter() - self._t0, 3)}
        self.json.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        return self.json

    def write_summary(self, keys: Sequence[str], metrics: Sequence[str]) -> list[dict[str, Any]]:
        """``<name>_summary.csv`` from every row so far (:func:`summarise`); returns its rows."""
        summary = summarise(self.rows(), keys, metrics)
        fields = [*keys, "n", *(f"{m}_{s}" for m in metrics for s in ("mean", "std"))]
        with self.summary_csv.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(summary)
        return summary

    @contextmanager
    def appender(self) -> Iterator[Callable[[Mapping[str, Any]], None]]:
        """A function that appends one row and flushes it (the header is written once)."""
        new = not self.csv.exists()
        with self.csv.open("a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields)
            if new:
                w.writeheader()

            def append(row: Mapping[str, Any]) -> None:
                w.writerow(row)
                f.flush()  # each finished configuration survives a crash

            yield append

    @contextmanager
    def figure(self, title: str) -> Iterator[Any]:
        """A matplotlib (Agg) axes; on exit the figure is laid out, saved as ``<name>.png`` and closed."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.5))
        try:
            yield ax
            ax.set_title(title, fontsize=8)
            ax.legend(fontsize=7)
            fig.tight_layout()
            fig.savefig(self.png, dpi=80)
        finally:
            plt.close(fig)
