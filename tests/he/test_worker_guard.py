"""Regression: SEAL worker processes (batch engine, parallel encryption) are not left behind when
their party process dies abruptly (found after an AP killed by a fault hook left two orphans)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

SCRIPT = r"""
import os, sys
import numpy as np
import keras
from capc.he import ModelEvaluator, QueryKeys, choose_params, compile_model
from capc.he.layers import Square

keras.utils.set_random_seed(0)
model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(16), Square(),
                          keras.layers.Dense(10)])
plan = compile_model(model)
keys = QueryKeys(plan, choose_params(plan, packing="batch"), packing="batch", encrypt_workers=2)
q = keys.encrypt(np.random.default_rng(0).uniform(0, 1, (80, 8, 8, 1)))
ev = ModelEvaluator(plan, keys.public_context(), workers=2)
ev.evaluate(q)
pids = list(keys._pool._processes) + list(ev._segs[0].engine._pool._processes)
print(" ".join(map(str, pids)), flush=True)
os._exit(3)  # no clean-up at all, as when a party is killed
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False


def test_workers_exit_with_their_parent():
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    # read the PID line, then wait for the exit: orphans would keep the pipe open (no EOF)
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, env=env)
    line = proc.stdout.readline()
    assert proc.wait(timeout=300) == 3
    proc.stdout.close()
    pids = [int(p) for p in line.split()]
    assert len(pids) == 4
    deadline = time.monotonic() + 30
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)  # polling the process table: there is nothing to wait on for a non-child
    assert not [p for p in pids if _alive(p)], "worker processes outlived their parent"
