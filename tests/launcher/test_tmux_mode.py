"""tmux mode on a private tmux server: panes show the parties live, failures are named, the
window is cleaned up, and no process is left behind."""

import os
import secrets
import shutil
import signal
import subprocess
import threading

import pytest

from capc.launcher.errors import PartyFailed
from capc.launcher.launcher import Launcher

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None,
                                reason="tmux is not installed (apt-get install tmux)")


@pytest.fixture
def tmux_server(tmp_path_factory, monkeypatch):
    """A private tmux server whose socket lives in a pytest temporary directory."""
    libtmux = pytest.importorskip("libtmux")
    monkeypatch.setenv("TMUX_TMPDIR", str(tmp_path_factory.mktemp("tmux")))
    monkeypatch.delenv("TMUX", raising=False)
    name = f"capc-test-{secrets.token_hex(4)}"
    server = libtmux.Server(socket_name=name)
    yield name, server
    if server.is_alive():
        server.kill()


def make(run_dir, socket_name, n_aps, **kw):
    options = {"socket_name": socket_name, "session": "capc", "n_aps": n_aps}
    options.update(kw.pop("tmux_options", {}))
    return Launcher(run_dir, backend="tmux", grace=1.0, timeout=60,
                    out=open(os.devnull, "w"), tmux_options=options, **kw)


def text(backend, pane):
    return "\n".join(backend.capture(pane))


class PaneOutput:
    """Follows a session through a tmux control-mode client: every ``%output`` line is a chunk
    tmux has already put on a pane's screen, so once a text was seen, capture-pane shows it."""

    def __init__(self, socket_name, session):
        self.proc = subprocess.Popen(["tmux", "-L", socket_name, "-C", "attach", "-t", session],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.seen = {}
        self.cond = threading.Condition()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self):
        for raw in self.proc.stdout:
            line = raw.decode("utf-8", "replace")
            if line.startswith("%output "):
                _, pane, data = line.split(" ", 2)
                with self.cond:
                    self.seen[pane] = self.seen.get(pane, "") + data
                    self.cond.notify_all()

    def wait_for(self, pane, needle, timeout=30):
        with self.cond:
            ok = self.cond.wait_for(lambda: needle in self.seen.get(pane, ""), timeout)
        assert ok, f"pane {pane} never showed {needle!r}: {self.seen.get(pane)!r}"

    def close(self):
        self.proc.stdin.close()                 # a control client detaches on end of input
        self.proc.wait(timeout=30)
        self.thread.join(timeout=30)
        self.proc.stdout.close()


def test_panes_show_parties_and_window_is_closed(run_dir, dummy, alive, tmux_server):
    name, server = tmux_server
    launcher = make(run_dir, name, n_aps=2)
    with launcher:
        tb = launcher.backend
        assert server.has_session("capc") and tb.created_session
        watch = PaneOutput(name, "capc")
        specs = [launcher.spec("pg", "pg", dummy("ok")), launcher.spec("ap0", "ap", dummy("ok")),
                 launcher.spec("qp", "qp", dummy("ok")), launcher.spec("ap1", "ap", dummy("ok"))]
        handles = launcher.start_parties(specs)
        assert all(h.pane_id and h.endpoint for h in handles.values())
        for n in handles:
            launcher.send(n, {"type": "go", "value": 42})
        assert launcher.wait_done() == {n: {"name": n, "value": 42} for n in handles}
        assert all(h.returncode == 0 for h in handles.values())
        for n, h in handles.items():
            watch.wait_for(h.pane_id, f"== {n} ended: code 0")
            shown = text(tb, h.pane_id)
            assert f"{n}: got go with value 42" in shown and f"== {n} ended: code 0" in shown
            assert f"{n}: got go with value 42" in h.log_path.read_text()
        titles = server.cmd("list-panes", "-t", tb.window_id, "-F", "#{pane_title}").stdout
        assert titles == ["launcher", "QP qp", "AP ap0", "AP ap1", "PG pg"]
        pids = [p for h in handles.values() for p in (h.pid, h.party_pid)]
        watch.close()
    assert not any(alive(p) for p in pids)
    assert not server.has_session("capc")           # the run's window (and session) are gone


def test_failing_party_in_a_pane_is_reported(run_dir, dummy, alive, tmux_server):
    name, server = tmux_server
    server.cmd("new-session", "-d", "-s", "capc", "-x", "200", "-y", "50", "cat")
    launcher = make(run_dir, name, n_aps=1)
    with launcher:
        tb = launcher.backend
        assert not tb.created_session                # joined the existing session, own window
        watch = PaneOutput(name, "capc")
        launcher.start_parties([launcher.spec("pg", "pg", dummy("stubborn")),
                                launcher.spec("qp", "qp", dummy("hang"))])
        launcher.start_parties([launcher.spec("ap0", "ap", dummy("fail"))])
        with pytest.raises(PartyFailed) as info:
            launcher.wait_done()
        assert info.value.party == "ap0" and "boom in ap0" in info.value.reason
        assert "exited with code 3" in info.value.reason
        assert "ap0: something went wrong here" in str(info.value)
        handles = dict(launcher.handles)
        assert handles["pg"].returncode == -signal.SIGKILL
        assert handles["qp"].returncode == -signal.SIGTERM
        watch.wait_for(handles["ap0"].pane_id, "== ap0 ended: code 3")
        assert "ap0: something went wrong here" in text(tb, handles["ap0"].pane_id)
        pids = [p for h in handles.values() for p in (h.pid, h.party_pid)]
        watch.close()
    assert not any(alive(p) for p in pids)
    # in the user's own session the run's window stays, with the failure still on screen, until the
    # user dismisses it
    windows = server.cmd("list-windows", "-t", "capc", "-F", "#{window_name}").stdout
    assert len(windows) == 2 and windows[1] == tb.window_name
    assert "ap0: something went wrong here" in text(tb, handles["ap0"].pane_id)
    server.cmd("kill-window", "-t", tb.window_id)


def test_many_aps_share_a_log_pane(run_dir, dummy, alive, tmux_server):
    name, server = tmux_server
    launcher = make(run_dir, name, n_aps=5, debug=True)
    with launcher:
        tb = launcher.backend
        specs = [launcher.spec(f"ap{i}", "ap", dummy("ok")) for i in range(5)]
        handles = launcher.start_parties(specs)
        assert all(h.pane_id is None and h.popen is not None for h in handles.values())
        for n in handles:
            launcher.send(n, {"type": "go", "value": 1})
        launcher.wait_done()
        panes = server.cmd("list-panes", "-t", tb.window_id, "-F", "#{pane_title}").stdout
        assert panes == ["launcher", "APs (5): logs"]
        pids = [h.pid for h in handles.values()]
    assert not any(alive(p) for p in pids)
    # --debug keeps the window for inspection; the log-following panes end with the launcher.
    assert server.has_session("capc")


def test_main_in_tmux_mode(tmp_path, dummy, tmux_server):
    import io
    import json

    from capc.launcher.experiment import main
    from capc.launcher.results import ExperimentResult, QueryRow

    name, server = tmux_server

    def runner(config, launcher):
        handles = launcher.start_parties([launcher.spec("qp", "qp", dummy("ok"))])
        launcher.send("qp", {"type": "go", "value": 5})
        launcher.wait_done()
        return ExperimentResult([QueryRow(0, 5, 5, {"1a": 0.1})], None, plaintext=True)

    out = io.StringIO()
    status = main(["--tmux", "--session", "capcmain", "--run_dir", str(tmp_path / "r")],
                  runner=runner, out=out, err=io.StringIO(), tmux_options={"socket_name": name})
    assert status == 0
    assert f"tmux -L {name} attach -t capcmain" in out.getvalue()
    assert "privacy spent: not reported" in out.getvalue()
    assert json.loads((tmp_path / "r" / "run.json").read_text())["backend"] == "tmux"
    assert not server.has_session("capcmain")
