"""``--debug`` asks the parties for verbose logs: the launcher sets the parties' log level, and at
DEBUG every party logs each message it sends and receives (type, peer, size; never contents).

Before: ``--debug`` was documented as asking for verbose logs but reached no party, and capc had no
debug log lines at all."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import pytest

from capc.errors import ConfigError
from capc.launcher.launcher import Launcher
from capc.net.channel import channel_pair
from capc.net.messages import QueryRequest, StepDone
from capc.parties.common import LOG_LEVEL_ENV, log_level

_PARTY = """
import logging
from capc.net.channel import channel_pair
from capc.net.messages import QueryRequest
from capc.parties.common import party_logger
log = party_logger("ap-1")
log.debug("party debug line")
a, b = channel_pair("qp-0", "ap-1")
a.send(QueryRequest([7], (b"secret-ciphertext-bytes",), 10, 8))
b.recv(QueryRequest, timeout=5)
"""


def _run_party(level: str | None) -> str:
    env = dict(os.environ)
    env.pop(LOG_LEVEL_ENV, None)
    if level is not None:
        env[LOG_LEVEL_ENV] = level
    out = subprocess.run([sys.executable, "-c", _PARTY], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stderr


def test_debug_level_logs_every_message_with_its_size_and_not_its_contents():
    err = _run_party("DEBUG")
    assert "ap-1: party debug line" in err
    sent = [ln for ln in err.splitlines() if "[capc.net]: sent QUERY_REQUEST to ap-1" in ln]
    got = [ln for ln in err.splitlines() if "[capc.net]: received QueryRequest from qp-0" in ln]
    assert len(sent) == 1 and len(got) == 1, err
    # both sides count the same frame
    assert sent[0].rsplit("(", 1)[1] == got[0].rsplit("(", 1)[1]
    assert "secret-ciphertext-bytes" not in err


def test_default_level_is_quiet():
    err = _run_party(None)
    assert "party debug line" not in err and "capc.net" not in err


def test_unknown_level_is_refused_by_name(monkeypatch):
    monkeypatch.setenv(LOG_LEVEL_ENV, "chatty")
    with pytest.raises(ConfigError, match="CAPC_LOG_LEVEL='CHATTY'"):
        log_level()
    monkeypatch.setenv(LOG_LEVEL_ENV, "debug")
    assert log_level() == logging.DEBUG


@pytest.mark.parametrize("debug", [False, True])
def test_launcher_passes_debug_to_every_party(run_dir, debug):
    with Launcher(run_dir, out=open(os.devnull, "w"), debug=debug) as launcher:
        env = launcher.party_env(launcher.spec("ap-1", "ap", [sys.executable, "-c", "pass"]))
    assert (env.get(LOG_LEVEL_ENV) == "DEBUG") is debug


def test_messages_are_not_formatted_unless_debugging(caplog):
    # at INFO nothing is logged per message (the check is one isEnabledFor per send and receive)
    a, b = channel_pair("qp-0", "ap-1")
    with a, b, caplog.at_level(logging.INFO, logger="capc.net"):
        a.send(StepDone(1, "x"))
        b.recv(StepDone, timeout=5)
    assert not [r for r in caplog.records if r.name == "capc.net"]
