"""A results folder for one paper script: a resumable CSV, a parameters JSON and the figure.

Every per-result script (``scripts/paper/*.py``) writes ``<name>.csv`` (one row per finished
configuration, flushed as soon as it is written, so a crashed run resumes where it stopped),
``<name>.json`` (the parameters, seeds and library versions of the run) and ``<name>.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version()}
    for dist in ("capc", "numpy", "tensorflow", "matplotlib"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


class ResultsFolder:
    """``out/<name>.{csv,json,png}`` with the CSV columns ``fields``."""

    def __init__(self, out: str | Path, name: str, fields: Sequence[str]) -> None:
        self.dir = Path(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.fields = list(fields)
        self.csv = self.dir / f"{name}.csv"
        self.png = self.dir / f"{name}.png"

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
        """``<name>.json``: every flag, what ``extra`` adds (seeds, labels) and the library versions."""
        path = self.dir / f"{self.name}.json"
        data = {"parameters": vars(args), **extra, "versions": _versions()}
        path.write_text(json.dumps(data, indent=2, default=str) + "\n", encoding="utf-8")
        return path

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
