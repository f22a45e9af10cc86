"""Fixtures for the launcher tests: run directories, dummy party commands, process checks."""

import sys
from pathlib import Path

import pytest

from capc.launcher.rundir import RunDir

HERE = Path(__file__).resolve().parent
DUMMY = HERE / "dummy_party.py"


def dummy_argv(mode: str) -> list[str]:
    """The command line of a dummy party in ``mode`` (see dummy_party.py)."""
    return [sys.executable, str(DUMMY), mode]


def pid_alive(pid: int) -> bool:
    """True if ``pid`` is a live (non-zombie) process."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            state = fh.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def run_dir(tmp_path: Path) -> RunDir:
    rd = RunDir.create(tmp_path / "run")
    yield rd
    rd.close()


@pytest.fixture
def dummy():
    return dummy_argv


@pytest.fixture
def alive():
    return pid_alive
