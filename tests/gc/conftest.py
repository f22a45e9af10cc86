"""Fixtures for the garbled-circuit tests: make sure the engine is built, find free loopback ports."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from gc_helpers import build_dir, cmake_build


@pytest.fixture(scope="session")
def gc_built() -> Path:
    """Ensure the programs and the Python module exist (build them if not); return the build dir."""
    from capc.gc import engine_available, program_path
    from capc.gc.errors import GcEngineMissing
    from capc.gc.programs import load_engine

    bdir = build_dir()
    try:
        for name in ("argmax_share", "noisy_argmax", "relu_share", "maxpool_share"):
            program_path(name)
        # A module built before relu_share/maxpool_share existed is stale: rebuild it.
        ok = engine_available() and hasattr(load_engine().Session, "relu_share_evaluator")
    except GcEngineMissing:
        ok = False
    if not ok:
        cmake_build(bdir)
    return bdir


@pytest.fixture
def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
