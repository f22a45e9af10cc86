"""Locating the compiled garbled-circuit engine: the pybind11 module and the standalone programs."""

from __future__ import annotations

import importlib
import os
from pathlib import Path

from capc.gc.errors import GcEngineMissing

#: Programs built into ``gc-emp-test/bin/``.
PROGRAMS = ("argmax_share", "noisy_argmax", "relu_share", "maxpool_share", "gc_bench")

_BUILD_HINT = ("build it with `pip install -e .` or `cmake -S gc-emp-test -B build/gc-emp-test && "
               "cmake --build build/gc-emp-test -j2`")


def engine_available() -> bool:
    """Return True when the compiled module ``capc.gc._engine`` can be imported."""
    try:
        importlib.import_module("capc.gc._engine")
    except ImportError:
        return False
    return True


def load_engine():
    """Import and return ``capc.gc._engine``, or raise :class:`GcEngineMissing` saying how to build it."""
    try:
        return importlib.import_module("capc.gc._engine")
    except ImportError as exc:
        raise GcEngineMissing(f"the garbled-circuit engine capc.gc._engine is not built ({exc}); "
                              f"{_BUILD_HINT}") from exc


def bin_dir() -> Path:
    """Directory of the 2PC programs: ``$CAPC_GC_BIN`` if set, else ``gc-emp-test/bin`` of the source tree."""
    override = os.environ.get("CAPC_GC_BIN")
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[2] / "gc-emp-test" / "bin"


def program_path(name: str) -> Path:
    """Return the path of the built program ``name`` (e.g. ``"argmax_share"``).

    Raises :class:`GcEngineMissing` when it has not been built, and ``ValueError`` for an unknown name.
    """
    if name not in PROGRAMS:
        raise ValueError(f"unknown 2PC program {name!r}; expected one of {', '.join(PROGRAMS)}")
    path = bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        where = "CAPC_GC_BIN" if os.environ.get("CAPC_GC_BIN") else "gc-emp-test/bin"
        raise GcEngineMissing(f"2PC program {name!r} not found at {path} ({where}); {_BUILD_HINT}")
    return path
