"""The pane supervisor: runs one party inside a tmux pane and reports its exit status.

A tmux pane cannot hand an exit code back to the launcher, so in tmux mode each pane runs
``python -m capc.launcher.supervisor``. It connects to the control socket as the party's
``supervisor``, receives the party's command, environment and log path in the ``welcome`` reply
(so the environment never touches the disk), runs the party in the pane's process group, copies
its output both to the pane and to ``logs/<party>.log``, and finally sends ``exited {code}``.
The pane stays open afterwards (``remain-on-exit``) so its output can be read.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from capc.launcher.control import ControlClient
from capc.launcher.errors import ControlError


def _exit_status(code: int) -> int:
    return code if code >= 0 else 128 - code


def run() -> int:
    """Supervise the party named in the environment; return the status to exit with."""
    try:
        ctl = ControlClient.from_env(kind="supervisor")
    except ControlError as exc:
        print(f"capc supervisor: {exc}", file=sys.stderr, flush=True)
        return 2
    spec = ctl.welcome
    name = os.environ.get("CAPC_PARTY_NAME", "?")
    # The launcher signals the whole pane process group; the party gets the signal directly, and
    # we keep copying its output until it is gone, then report how it ended. A Python handler
    # (unlike SIG_IGN) is reset to the default in the child by exec.
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    out = sys.stdout.buffer
    with open(spec["log"], "ab") as log:
        banner = f"== {name}: {' '.join(spec['argv'])}\n".encode()
        out.write(banner)
        out.flush()
        try:
            proc = subprocess.Popen(spec["argv"], env=spec["env"], cwd=spec.get("cwd"),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT)
        except OSError as exc:
            msg = f"cannot start {spec['argv'][0]!r}: {exc.strerror or exc}\n".encode()
            out.write(msg)
            log.write(msg)
            out.flush()
            ctl.exited(127)
            ctl.close()
            return 127
        assert proc.stdout is not None
        while True:
            try:
                chunk = proc.stdout.read1(65536)
            except InterruptedError:
                continue
            if not chunk:
                break
            out.write(chunk)
            out.flush()
            log.write(chunk)
            log.flush()
        code = proc.wait()
    out.write(f"== {name} ended: code {code}\n".encode())
    out.flush()
    try:
        ctl.exited(code)
    except OSError:
        pass  # the launcher is gone; the pane still shows the status
    ctl.close()
    return _exit_status(code)


if __name__ == "__main__":
    sys.exit(run())
