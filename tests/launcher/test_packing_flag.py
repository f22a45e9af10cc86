"""--packing: auto chooses batch packing for a CKKS file that cannot key-switch (config/10.json) and
says why; explicit choices are kept; an unknown choice is refused by the parser."""

from __future__ import annotations

from pathlib import Path

import pytest

from capc.launcher.flags import parse_config
from capc.parties.orchestrate import resolve_packing

CONFIG_10 = str(Path(__file__).resolve().parents[2] / "config" / "10.json")
OWN = str(Path(__file__).resolve().parents[2] / "config" / "capc-n16384.json")


def test_auto_takes_batch_for_config_10_and_says_why():
    packing, why = resolve_packing(parse_config(["--encryption_params", CONFIG_10]))
    assert packing == "batch" and "special prime (30 bits)" in why and "--packing single" in why


@pytest.mark.parametrize("argv, want", [
    ([], "single"),
    (["--batch_size", "4"], "batch"),
    (["--encryption_params", OWN], "single"),
    (["--encryption_params", CONFIG_10, "--packing", "single"], "single"),
    (["--packing", "batch"], "batch"),
])
def test_packing_choices(argv, want):
    assert resolve_packing(parse_config(argv))[0] == want


def test_unknown_packing_is_refused(capsys):
    with pytest.raises(SystemExit):
        parse_config(["--packing", "complex"])
    assert "--packing" in capsys.readouterr().err
