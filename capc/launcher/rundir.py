"""The per-run output directory: parameters, versions, host, per-party logs and step timings.

Layout of ``runs/<YYYYmmdd-HHMMSS>-<id>/``::

    params.json     every flag after defaults
    run.json        run id, start time, argv, seed, software versions, host information
    timing.jsonl    one JSON object per timed step: step, party, query, seconds
    results.json    the run's per-query rows and privacy summary (written at the end)
    logs/<party>.log

JSON files are written atomically (temporary file, fsync, rename), so a crash never leaves a
half-written file behind.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any, Iterator, Mapping

from capc.launcher.errors import RunDirError

_PARTY_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON to ``path`` via a temporary file and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=2, sort_keys=True, default=str)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _dist_version(*names: str) -> str | None:
    for name in names:
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


def _gc_engine_build_id() -> str | None:
    """The GC engine's build id: ``capc.gc.engine_build_id()`` (or ``ENGINE_BUILD_ID``) if the
    package exposes one, else ``sha256:<prefix>`` of the compiled ``capc.gc._engine`` module,
    else None (engine not built)."""
    try:
        gc = importlib.import_module("capc.gc")
        probe = getattr(gc, "engine_build_id", None) or getattr(gc, "ENGINE_BUILD_ID", None)
        value = probe() if callable(probe) else probe
        if value is not None:
            return str(value)
        spec = importlib.util.find_spec("capc.gc._engine")
    except Exception:  # noqa: BLE001 - a missing or broken engine must not stop the run record
        return None
    if spec is None or not spec.origin or not os.path.isfile(spec.origin):
        return None
    digest = hashlib.sha256()
    with open(spec.origin, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()[:16]}"


def software_versions() -> dict[str, str | None]:
    """Versions of python, numpy, tensorflow, tenseal, capc and the GC engine (None if missing).

    Read from package metadata, so TensorFlow is not imported just to learn its version.
    """
    import capc

    return {
        "python": platform.python_version(),
        "numpy": _dist_version("numpy"),
        "tensorflow": _dist_version("tensorflow", "tensorflow-cpu"),
        "tenseal": _dist_version("tenseal"),
        "libtmux": _dist_version("libtmux"),
        "capc": getattr(capc, "__version__", None),
        "gc_engine": _gc_engine_build_id(),
    }


def host_info() -> dict[str, Any]:
    """Host name, OS, machine type and CPU count of this machine."""
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "python_executable_name": Path(sys.executable).name,
    }


def new_run_id(now: _dt.datetime | None = None) -> str:
    """``YYYYmmdd-HHMMSS-<6 hex>``: sortable by time, unique across concurrent runs."""
    now = now or _dt.datetime.now()
    return f"{now:%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


class TimingWriter:
    """Appends timing records to ``timing.jsonl`` (and optionally a second file), thread-safely.

    Each record is one line written with a single ``write`` on an append-mode file, so lines from
    concurrent writers never interleave.
    """

    def __init__(self, path: Path, extra_path: Path | None = None) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._files: list[IO[str]] = [open(self.path, "a", encoding="utf-8")]
        if extra_path is not None:
            self._files.append(open(extra_path, "a", encoding="utf-8"))

    def record(self, step: str, seconds: float, party: str | None = None,
               query: int | None = None, **extra: Any) -> dict[str, Any]:
        """Write one record ``{time, step, party, query, seconds, ...extra}`` and return it."""
        if not step:
            raise ValueError("timing step name must be non-empty")
        rec: dict[str, Any] = {"time": time.time(), "step": step, "party": party, "query": query,
                               "seconds": float(seconds)}
        rec.update(extra)
        line = json.dumps(rec, default=str) + "\n"
        with self._lock:
            for fh in self._files:
                fh.write(line)
                fh.flush()
        return rec

    def append(self, rec: dict[str, Any]) -> None:
        """Write a record made elsewhere (a party's own timing file) as it is."""
        line = json.dumps(rec, default=str) + "\n"
        with self._lock:
            for fh in self._files:
                fh.write(line)
                fh.flush()

    @contextlib.contextmanager
    def span(self, step: str, party: str | None = None, query: int | None = None,
             **extra: Any) -> Iterator[None]:
        """Time the body with ``time.perf_counter`` and record it (also when the body raises)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.record(step, time.perf_counter() - start, party=party, query=query, **extra)

    def close(self) -> None:
        """Close the files; later records raise ``ValueError``."""
        with self._lock:
            for fh in self._files:
                fh.close()

    @staticmethod
    def read(path: Path) -> list[dict[str, Any]]:
        """All records of a timing file, in order."""
        with open(path, encoding="utf-8") as fh:
            return [json.loads(line) for line in fh if line.strip()]


class RunDir:
    """One run's output directory; create it with :meth:`create`."""

    def __init__(self, path: Path, run_id: str) -> None:
        self.path = Path(path)
        self.run_id = run_id
        self.logs = self.path / "logs"
        self.timing: TimingWriter | None = None

    @classmethod
    def create(cls, path: Path | None = None, base: Path | None = None) -> "RunDir":
        """Create ``path`` (must be new or empty) or ``<base or ./runs>/<run id>`` with ``logs/``."""
        run_id = new_run_id()
        if path is None:
            path = Path(base if base is not None else Path.cwd() / "runs") / run_id
        else:
            path = Path(path)
            run_id = path.name
        try:
            if path.exists() and (not path.is_dir() or any(path.iterdir())):
                raise RunDirError(f"run directory {str(path)!r} exists and is not empty")
            (path / "logs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunDirError(f"cannot create run directory {str(path)!r}: {exc}") from None
        return cls(path, run_id)

    def log_path(self, party: str) -> Path:
        """``logs/<party>.log``; the party name must be a plain file-name-safe word."""
        if not _PARTY_RE.match(party) or party in (".", ".."):
            raise RunDirError(f"party name {party!r} is not usable as a log file name")
        return self.logs / f"{party}.log"

    def write_params(self, params: Mapping[str, Any]) -> Path:
        """Write ``params.json`` (all flags after defaults)."""
        target = self.path / "params.json"
        write_json_atomic(target, dict(params))
        return target

    def write_run_info(self, seed: int, argv: list[str] | None = None,
                       extra: Mapping[str, Any] | None = None) -> Path:
        """Write ``run.json``: run id, start time, argv, seed, versions and host information."""
        info: dict[str, Any] = {
            "run_id": self.run_id,
            "started": _dt.datetime.now(_dt.timezone.utc).isoformat(),
            "argv": list(argv) if argv is not None else None,
            "seed": seed,
            "versions": software_versions(),
            "host": host_info(),
        }
        if extra:
            info.update(extra)
        target = self.path / "run.json"
        write_json_atomic(target, info)
        return target

    def write_json(self, name: str, data: Any) -> Path:
        """Write ``<name>`` (a plain file name) in the run directory atomically."""
        if "/" in name or name in ("", ".", ".."):
            raise RunDirError(f"{name!r} is not a plain file name")
        target = self.path / name
        write_json_atomic(target, data)
        return target

    def open_timing(self, extra_path: Path | None = None) -> TimingWriter:
        """Open (once) and return the ``timing.jsonl`` writer."""
        if self.timing is None:
            self.timing = TimingWriter(self.path / "timing.jsonl", extra_path)
        return self.timing

    def close(self) -> None:
        """Close the timing writer."""
        if self.timing is not None:
            self.timing.close()
