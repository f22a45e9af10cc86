"""Subprocess mode with real dummy party processes: ready -> done, failures, timeouts, cleanup."""

import os
import signal

import pytest

from capc.launcher.errors import LauncherError, PartyFailed, PartyTimeout
from capc.launcher.launcher import Launcher
from capc.launcher.processes import PartySpec


def make(run_dir, **kw):
    kw.setdefault("grace", 1.0)
    kw.setdefault("timeout", 60)
    return Launcher(run_dir, out=open(os.devnull, "w"), **kw)


def test_all_ready_then_done(run_dir, dummy, alive):
    with make(run_dir) as launcher:
        seen = []
        launcher.on_progress(lambda party, data: seen.append((party, data["value"])))
        specs = [launcher.spec(n, r, dummy("ok")) for n, r in
                 (("ap0", "ap"), ("ap1", "ap"), ("pg", "pg"))]
        handles = launcher.start_parties(specs)
        assert set(handles) == {"ap0", "ap1", "pg"}
        for h in handles.values():
            assert h.state == "ready" and h.endpoint.startswith("127.0.0.1:")
            assert int(h.endpoint.rsplit(":", 1)[1]) > 0
        for i, name in enumerate(handles):
            assert launcher.send(name, {"type": "go", "value": i})
        summaries = launcher.wait_done()
        assert summaries == {"ap0": {"name": "ap0", "value": 0}, "ap1": {"name": "ap1", "value": 1},
                             "pg": {"name": "pg", "value": 2}}
        assert sorted(seen) == [("ap0", 0), ("ap1", 1), ("pg", 2)]
        assert all(h.returncode == 0 for h in handles.values())
        pids = [h.pid for h in handles.values()]
    assert not any(alive(p) for p in pids)
    log = (run_dir.logs / "ap1.log").read_text()
    assert "ap1: got go with value 1" in log
    assert "started ap0 (ap)" in (run_dir.logs / "launcher.log").read_text()
    assert not (run_dir.path / "control.sock").exists()


def test_failed_party_stops_others_and_is_named(run_dir, dummy, alive):
    launcher = make(run_dir)
    with launcher:
        launcher.start_parties([launcher.spec("ap0", "ap", dummy("hang")),
                                launcher.spec("pg", "pg", dummy("obey"))])
        launcher.start_parties([launcher.spec("ap1", "ap", dummy("fail"))])
        with pytest.raises(PartyFailed) as info:
            launcher.wait_done()
        err = info.value
        assert err.party == "ap1" and "boom in ap1" in err.reason
        assert "exited with code 3" in err.reason
        assert "ap1: something went wrong here" in str(err)
        handles = dict(launcher.handles)
        assert all(h.returncode is not None for h in handles.values())
        assert handles["pg"].returncode == 0          # obeyed the stop message
        assert handles["ap0"].returncode == -signal.SIGTERM
    assert not any(alive(h.pid) for h in handles.values())


def test_crash_without_report(run_dir, dummy, alive):
    with make(run_dir) as launcher:
        launcher.start_parties([launcher.spec("qp", "qp", dummy("hang"))])
        with pytest.raises(PartyFailed) as info:
            # The exit watcher and the control reader are separate threads, so the crash may be
            # seen before or after the "ready" it sent: either wait must report it.
            launcher.start_parties([launcher.spec("ap0", "ap", dummy("crash"))])
            launcher.wait_done(["ap0"])
        assert info.value.party == "ap0"
        assert "exited with code 5" in info.value.reason
        assert "about to crash" in info.value.log_tail
        pid = launcher.handles["qp"].pid
    assert not alive(pid)


def test_ready_timeout_names_parties_and_sigkills_stubborn(run_dir, dummy, alive):
    with make(run_dir, grace=0.5) as launcher:
        with pytest.raises(PartyTimeout) as info:
            launcher.start_parties([launcher.spec("ap0", "ap", dummy("noready")),
                                    launcher.spec("pg", "pg", dummy("stubborn"))], timeout=5)
        assert info.value.parties == ["ap0"] and "ready" in str(info.value)
        handles = dict(launcher.handles)
    assert handles["pg"].returncode == -signal.SIGKILL
    assert not any(alive(h.pid) for h in handles.values())


def test_helpers_in_party_group_are_removed(run_dir, dummy, alive):
    with make(run_dir) as launcher:
        launcher.start_parties([launcher.spec("ap0", "ap", dummy("helper"))])
        log = (run_dir.logs / "ap0.log").read_text()
        helper = int(log.split("helper pid ")[1].split()[0])
        assert alive(helper)
    assert not alive(helper)


def test_bad_specs(run_dir, dummy):
    with make(run_dir) as launcher:
        with pytest.raises(LauncherError, match="party name"):
            launcher.start_parties([PartySpec("a b", "ap", dummy("ok"))])
        with pytest.raises(LauncherError, match="argv must be"):
            launcher.start_parties([PartySpec("a", "ap", "python x.py")])
        with pytest.raises(LauncherError, match="duplicate"):
            launcher.start_parties([launcher.spec("a", "ap", ["x"]), launcher.spec("a", "ap", ["x"])])
        with pytest.raises(LauncherError, match="cannot start"):
            launcher.start_parties([launcher.spec("b", "ap", ["/nonexistent/capc-party"])])


def test_stranger_cannot_join(run_dir):
    from capc.launcher.control import ControlClient
    from capc.launcher.errors import ControlError

    with make(run_dir) as launcher:
        with pytest.raises(ControlError, match="no party named 'ghost'"):
            ControlClient(launcher.control_path, "ghost", token=launcher.token)


def test_exit_seen_before_done_is_not_a_failure(run_dir):
    """Regression: the exit watcher and the control reader are separate threads, so a party's exit
    (code 0) can reach the launcher before the "done" it sent just before exiting."""
    from capc.launcher.control import ControlEvent
    from capc.launcher.processes import PartyHandle

    with make(run_dir) as launcher:
        h = PartyHandle(spec=launcher.spec("ap0", "ap", ["true"]), log_path=run_dir.logs / "ap0.log", pid=1)
        launcher.handles["ap0"] = h
        assert launcher._apply(ControlEvent("ap0", "connected", {"pid": 1})) is None
        assert launcher._apply(ControlEvent("ap0", "exited", {"code": 0}, kind="process")) is None
        assert launcher._apply(ControlEvent("ap0", "done", {"summary": {"k": 1}})) is None
        assert launcher._apply(ControlEvent("ap0", "eof")) is None
        assert h.state == "done" and h.returncode == 0
        # without a done before the connection closes it is a failure
        g = PartyHandle(spec=launcher.spec("ap1", "ap", ["true"]), log_path=run_dir.logs / "ap1.log", pid=2)
        launcher.handles["ap1"] = g
        launcher._apply(ControlEvent("ap1", "connected", {"pid": 2}))
        assert launcher._apply(ControlEvent("ap1", "exited", {"code": 0}, kind="process")) is None
        assert "before reporting done" in launcher._apply(ControlEvent("ap1", "eof"))
        launcher.handles.pop("ap0"), launcher.handles.pop("ap1")
