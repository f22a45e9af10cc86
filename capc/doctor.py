"""``capc doctor``: what this installation has, in one small table.

Reports the versions of Python and the libraries capc runs on, whether the tmux binary is there,
whether the garbled-circuit engine (programs and Python module) is built, and the CPU features the
engine uses (AES-NI). Every probe is independent: one missing piece never hides the others.
"""

from __future__ import annotations

import importlib
import os
import platform
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Check:
    """One row of the doctor's table."""

    name: str
    ok: bool
    detail: str
    required: bool = True


def _module_version(module: str, dist: str | None = None) -> Check:
    try:
        if module == "tensorflow":
            from capc._tf import import_tensorflow

            mod = import_tensorflow()
        else:
            mod = importlib.import_module(module)
    except Exception as exc:  # an import can fail with anything, not only ImportError
        return Check(dist or module, False, f"not importable: {type(exc).__name__}: {exc}".splitlines()[0])
    version = getattr(mod, "__version__", None)
    if version is None:
        try:
            from importlib.metadata import version as dist_version

            version = dist_version(dist or module)
        except Exception:
            version = "unknown version"
    return Check(dist or module, True, str(version))


def _tmux() -> Check:
    exe = shutil.which("tmux")
    if exe is None:
        return Check("tmux", False, "not on PATH (Debian: apt-get install tmux); only needed for --tmux",
                     required=False)
    try:
        out = subprocess.run([exe, "-V"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("tmux", False, f"{exe} does not run: {exc}", required=False)
    return Check("tmux", True, out or exe, required=False)


def cpu_has_aesni() -> bool | None:
    """True/False from /proc/cpuinfo's flags on Linux; None where that cannot be read."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return " aes " in f" {line.split(':', 1)[-1].strip()} "
    return None


def _gc_engine() -> list[Check]:
    rows: list[Check] = []
    try:
        gc = importlib.import_module("capc.gc")
    except Exception as exc:
        return [Check("GC engine", False, f"capc.gc not importable: {exc}".splitlines()[0])]
    try:
        available = bool(gc.engine_available())
    except Exception as exc:
        available = False
        rows.append(Check("GC Python module", False, f"{type(exc).__name__}: {exc}"))
    else:
        rows.append(Check("GC Python module", available,
                          "capc.gc._engine built" if available else
                          "not built: run `pip install -e .` (needs cmake, g++, libssl-dev)"))
    for prog in ("argmax_share", "noisy_argmax"):
        try:
            path = gc.program_path(prog)
            rows.append(Check(f"GC program {prog}", True, str(path)))
        except Exception as exc:
            rows.append(Check(f"GC program {prog}", False, str(exc).splitlines()[0]))
    return rows


def _he_kernels() -> Check:
    """The compiled limb kernels of the batch HE engine (optional: a NumPy path gives the same
    results, about twice as slowly for a convolution layer)."""
    try:
        from capc.he import raw
    except Exception as exc:
        return Check("HE limb kernels", False, f"capc.he not importable: {exc}".splitlines()[0], required=False)
    if raw._rns is None:
        return Check("HE limb kernels", False, "not built (NumPy fallback): run `pip install -e .`", required=False)
    return Check("HE limb kernels", True, "capc.he._rns built", required=False)


def run_checks() -> list[Check]:
    """Probe the installation and return one :class:`Check` per component."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides the table
    rows = [Check("Python", sys.version_info >= (3, 10), platform.python_version())]
    rows.append(_module_version("capc"))
    rows.append(_module_version("numpy"))
    rows.append(_module_version("tenseal"))
    rows.append(_module_version("tensorflow"))
    rows.append(_module_version("libtmux"))
    rows.append(_tmux())
    rows.extend(_gc_engine())
    rows.append(_he_kernels())
    aes = cpu_has_aesni()
    rows.append(Check("CPU AES-NI", bool(aes),
                      {True: "yes (hardware AES for garbling)", False: "no (OpenSSL software AES, slower)",
                       None: "unknown on this platform"}[aes], required=False))
    rows.append(Check("CPU", True, f"{platform.machine()}, {platform.system()} {platform.release()}",
                      required=False))
    return rows


def format_table(rows: list[Check]) -> str:
    """Render checks as an aligned plain-text table."""
    width = max(len(r.name) for r in rows)
    lines = [f"{'component':<{width}}  status  detail", f"{'-' * width}  ------  ------"]
    for r in rows:
        status = "ok" if r.ok else ("MISSING" if r.required else "warn")
        lines.append(f"{r.name:<{width}}  {status:<6}  {r.detail}")
    return "\n".join(lines)


def main() -> int:
    """Print the table; exit status 1 when a required component is missing."""
    rows = run_checks()
    print(format_table(rows))
    return 0 if all(r.ok or not r.required for r in rows) else 1
