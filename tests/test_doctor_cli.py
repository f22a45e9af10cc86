"""`capc doctor` and the `capc` command's error handling."""

from __future__ import annotations

import subprocess
import sys

from capc import doctor
from capc.cli import main


def test_doctor_reports_every_component() -> None:
    rows = {r.name: r for r in doctor.run_checks()}
    for name in ("Python", "capc", "numpy", "tenseal", "tensorflow", "libtmux", "tmux", "HE limb kernels",
                 "CPU AES-NI"):
        assert name in rows, name
    assert rows["Python"].ok and rows["numpy"].ok
    assert any(name.startswith("GC") for name in rows)
    table = doctor.format_table(list(rows.values()))
    assert "component" in table and "numpy" in table


def test_doctor_flags_a_missing_module() -> None:
    row = doctor._module_version("capc_no_such_module_xyz")
    assert not row.ok and "not importable" in row.detail


def test_aesni_probe_matches_cpuinfo() -> None:
    flag = doctor.cpu_has_aesni()
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        assert flag is None
        return
    assert flag == (" aes " in text.replace("\n", " ") + " ")


def test_console_script_runs(capsys) -> None:
    proc = subprocess.run([sys.executable, "-m", "capc.cli", "doctor"], capture_output=True, text=True, timeout=120)
    assert "component" in proc.stdout and "tenseal" in proc.stdout
    assert proc.returncode in (0, 1)


def test_unknown_subcommand_is_a_usage_error(capsys) -> None:
    try:
        main(["frobnicate"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "invalid choice" in capsys.readouterr().err
