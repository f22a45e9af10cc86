"""Helpers for the garbled-circuit tests: running a program pair, a recording TCP relay, int files, a peer
thread over a socketpair."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from capc.gc import program_path

TIMEOUT = 60
REPO = Path(__file__).resolve().parents[2]
GC_SOURCE = REPO / "gc-emp-test"
DEFAULT_BUILD = REPO / "build" / "gc-emp-test"  # the directory setup.py builds into


def build_dir() -> Path:
    """The CMake build directory to use: $CAPC_GC_BUILD_DIR, else the one setup.py uses."""
    return Path(os.environ.get("CAPC_GC_BUILD_DIR") or DEFAULT_BUILD)


def cmake_build(bdir: Path, python_module: bool = True) -> None:
    """Configure and build gc-emp-test into bdir (incremental when already built)."""
    cmake = shutil.which("cmake")
    if cmake is None:
        pytest.skip("cmake is not installed (apt-get install cmake); cannot build the garbled-circuit engine")
    cfg = [cmake, "-S", str(GC_SOURCE), "-B", str(bdir), "-DCMAKE_BUILD_TYPE=Release"]
    if python_module:
        import pybind11

        cfg += ["-DCAPC_GC_PYTHON=ON", f"-DPython_EXECUTABLE={sys.executable}",
                f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
                f"-DCAPC_GC_PYMODULE_DIR={REPO / 'capc' / 'gc'}",
                f"-DCAPC_GC_BIN_DIR={GC_SOURCE / 'bin'}"]  # as the package build: where capc looks
    for cmd in (cfg, [cmake, "--build", str(bdir), "-j2"]):
        res = subprocess.run(["nice", *cmd], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.fail(f"building gc-emp-test failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")


@dataclass
class Run:
    """Result of one party's process."""

    returncode: int
    stdout: str
    stderr: str


def write_ints(path: Path, values) -> Path:
    path.write_text("".join(f"{int(v)}\n" for v in values))
    return path


def read_ints(path: Path) -> list[int]:
    return [int(x) for x in path.read_text().split()]


def run_pair(program: str, alice_args: list[str], bob_args: list[str], port: int,
             bob_port: int | None = None, extra: list[str] | None = None,
             alice_env: dict | None = None, bob_env: dict | None = None) -> tuple[Run, Run]:
    """Start party 1 (listens on port) and party 2 (connects to bob_port or port); wait for both."""
    exe = str(program_path(program))
    extra = extra or []
    a = subprocess.Popen([exe, "1", str(port), *alice_args, *extra], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, **(alice_env or {})})
    b = subprocess.Popen([exe, "2", str(bob_port or port), *bob_args, *extra], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env={**os.environ, **(bob_env or {})})
    out = []
    for p in (a, b):
        try:
            so, se = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            a.kill()
            b.kill()
            raise AssertionError(f"{program} did not finish within {TIMEOUT} s (hang)")
        out.append(Run(p.returncode, so, se))
    return out[0], out[1]


class Relay:
    """A one-connection TCP relay on 127.0.0.1 that records every byte in both directions."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(1)
        self.listener.settimeout(TIMEOUT)
        self.port = self.listener.getsockname()[1]
        self.captured = {"to_alice": bytearray(), "to_bob": bytearray()}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _pump(self, src: socket.socket, dst: socket.socket, buf: bytearray) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                buf.extend(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def _run(self) -> None:
        bob, _ = self.listener.accept()
        # ALICE may not be listening yet when BOB reaches the relay (both start together): retry
        # until the deadline, as the engine's own connect does.
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                alice = socket.create_connection(("127.0.0.1", self.target_port), timeout=TIMEOUT)
                break
            except ConnectionRefusedError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)  # back-off between connection attempts, not synchronisation
        bob.settimeout(TIMEOUT)
        t = threading.Thread(target=self._pump, args=(bob, alice, self.captured["to_alice"]))
        t.start()
        self._pump(alice, bob, self.captured["to_bob"])
        t.join()
        bob.close()
        alice.close()

    def join(self) -> bytes:
        self._thread.join(TIMEOUT)
        self.listener.close()
        return bytes(self.captured["to_alice"]) + bytes(self.captured["to_bob"])


def in_thread(fn, timeout: float = TIMEOUT):
    """Run fn in a thread; return a join() that re-raises its exception or returns its result."""
    box: dict = {}

    def target():
        try:
            box["result"] = fn()
        except BaseException as exc:  # re-raised in the test thread
            box["error"] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()

    def join():
        t.join(timeout)
        assert not t.is_alive(), "peer thread hung"
        if "error" in box:
            raise box["error"]
        return box.get("result")
    return join


def socket_pair(timeout: float = 30) -> tuple[socket.socket, socket.socket]:
    """A connected pair of stream sockets, both with a timeout so a missing peer fails instead of hanging."""
    a, b = socket.socketpair()
    a.settimeout(timeout)
    b.settimeout(timeout)
    return a, b


def wrap(v) -> np.ndarray:
    """Reduce Python ints to int64 with wrap-around (mod 2^64)."""
    return np.array([((int(x) + 2 ** 63) % 2 ** 64) - 2 ** 63 for x in v], dtype=np.int64)


def onehot(k: int, c: int) -> np.ndarray:
    e = np.zeros(c, dtype=np.int64)
    e[k] = 1
    return e
