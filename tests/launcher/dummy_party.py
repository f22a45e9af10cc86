"""A tiny party program for the launcher tests: connects to the control socket and behaves as told.

Usage: ``python dummy_party.py MODE`` with MODE one of
``ok`` (ready, wait for a ``go`` message, done), ``fail`` (ready, report failed, exit 3),
``crash`` (ready, exit 5 without a word), ``hang`` (ready, block until killed, ignoring ``stop``),
``stubborn`` (like hang but also ignores SIGTERM), ``obey`` (ready, exit 0 on ``stop``),
``noready`` (never ready), ``helper`` (start a grandchild in its process group, then hang).
"""

import os
import signal
import socket
import subprocess
import sys
import threading

from capc.launcher.control import ControlClient

mode = sys.argv[1]
name = os.environ["CAPC_PARTY_NAME"]
print(f"{name}: started in mode {mode} pid {os.getpid()}", flush=True)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
ctl = ControlClient.from_env()
with ctl.guard():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    endpoint = f"127.0.0.1:{listener.getsockname()[1]}"
    if mode == "noready":
        threading.Event().wait()
    if mode == "helper":
        child = subprocess.Popen([sys.executable, "-c", "import threading; threading.Event().wait()"])
        print(f"{name}: helper pid {child.pid}", flush=True)
        ctl.ready(endpoint, helper_pid=child.pid)
    else:
        ctl.ready(endpoint)
    print(f"{name}: ready at {endpoint}", flush=True)
    if mode == "ok":
        msg = ctl.receive(timeout=30)
        assert msg is not None and msg["type"] == "go", msg
        ctl.progress(step="work", value=msg.get("value"))
        print(f"{name}: got go with value {msg.get('value')}", flush=True)
        ctl.done({"name": name, "value": msg.get("value")})
    elif mode == "fail":
        print(f"{name}: something went wrong here", flush=True)
        ctl.failed(f"boom in {name}")
        sys.exit(3)
    elif mode == "crash":
        print(f"{name}: about to crash", flush=True)
        os._exit(5)
    elif mode in ("hang", "stubborn", "helper"):
        threading.Event().wait()
    elif mode == "obey":
        ctl.wait_stop()
        print(f"{name}: stopping on request", flush=True)
    else:
        raise ValueError(f"unknown mode {mode}")
ctl.close()
