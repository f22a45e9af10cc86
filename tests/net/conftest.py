"""Shared fixtures for capc.net tests: a run PKI, a second (foreign) PKI, and a thread runner."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from capc.net.certs import make_run_pki
from capc.net.tls import PartyTLS

PARTIES = ["qp-0", "ap-1", "ap-2", "pg"]


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    make_run_pki(d, PARTIES, run_label="test")
    return d


@pytest.fixture(scope="session")
def other_pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PKI of another run: same party names, different CA."""
    d = tmp_path_factory.mktemp("other-pki")
    make_run_pki(d, PARTIES, run_label="other")
    return d


@pytest.fixture(scope="session")
def creds(pki_dir: Path) -> dict[str, PartyTLS]:
    return {n: PartyTLS.load(pki_dir, n) for n in PARTIES}


@pytest.fixture
def in_thread() -> Iterator[Callable[..., Future[Any]]]:
    """Run a callable in a worker thread; ``.result(timeout)`` re-raises its exception."""
    ex = ThreadPoolExecutor(max_workers=4)
    yield lambda fn, *a, **kw: ex.submit(fn, *a, **kw)
    ex.shutdown(wait=True, cancel_futures=True)
