"""The experiment launcher: flags, run directory, control channel, party processes, tmux panes.

Modules, one job each:

* :mod:`~capc.launcher.flags` -- ``run_experiment.py`` flags, validated into ``ExperimentConfig``;
* :mod:`~capc.launcher.rundir` -- the per-run directory (params, versions, timings, logs);
* :mod:`~capc.launcher.control` -- the Unix-socket control channel (``ControlClient`` for parties);
* :mod:`~capc.launcher.processes` -- ``PartySpec`` and the subprocess backend;
* :mod:`~capc.launcher.tmux` -- the tmux backend (libtmux) and its pane supervisor;
* :mod:`~capc.launcher.launcher` -- the ``Launcher`` handed to the protocol runner;
* :mod:`~capc.launcher.results` -- ``ExperimentResult`` and the final table;
* :mod:`~capc.launcher.experiment` -- ``main(argv)`` behind ``run_experiment.py``.

Names are imported lazily so that a party process importing :mod:`capc.launcher.control` stays
light (no tqdm, no libtmux).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "ExperimentConfig": "capc.launcher.flags",
    "build_parser": "capc.launcher.flags",
    "RunDir": "capc.launcher.rundir",
    "TimingWriter": "capc.launcher.rundir",
    "ControlClient": "capc.launcher.control",
    "ControlServer": "capc.launcher.control",
    "PartySpec": "capc.launcher.processes",
    "PartyHandle": "capc.launcher.processes",
    "Launcher": "capc.launcher.launcher",
    "ExperimentResult": "capc.launcher.results",
    "QueryRow": "capc.launcher.results",
    "PrivacySummary": "capc.launcher.results",
    "main": "capc.launcher.experiment",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'capc.launcher' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
