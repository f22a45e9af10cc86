"""Control channel: hello/welcome, events in order, stop, rejection, EOF and bad messages."""

import json
import queue

import pytest

from capc.launcher.control import ControlClient, ControlServer
from capc.launcher.errors import ControlError


@pytest.fixture
def server(tmp_path):
    events = queue.Queue()
    allowed = {"qp", "ap0"}

    def authorize(party, kind, hello):
        return {"hi": party} if party in allowed else f"no party named {party!r}"

    srv = ControlServer(tmp_path / "c.sock", "tok", events, authorize)
    yield srv, events
    srv.close()


def next_event(events):
    return events.get(timeout=10)


def test_party_events_arrive_in_order(server):
    srv, events = server
    with ControlClient(srv.path, "ap0", token="tok") as c:
        assert c.welcome == {"hi": "ap0"}
        c.ready("127.0.0.1:5000")
        c.progress(query=1, step="1a")
        c.done({"ok": True})
        got = [next_event(events) for _ in range(4)]
    assert [(e.party, e.type) for e in got] == \
        [("ap0", "connected"), ("ap0", "ready"), ("ap0", "progress"), ("ap0", "done")]
    assert got[1].data["endpoint"] == "127.0.0.1:5000"
    assert got[2].data["data"] == {"query": 1, "step": "1a"}
    assert got[3].data["summary"] == {"ok": True}
    assert next_event(events).type == "eof"


def test_launcher_messages_and_stop(server):
    srv, events = server
    c = ControlClient(srv.path, "qp", token="tok")
    assert next_event(events).type == "connected"
    assert not c.stop_requested()
    assert srv.send("qp", {"type": "peers", "aps": ["a:1"]})
    assert srv.send("qp", {"type": "stop"})
    assert c.wait_stop(timeout=10)
    assert c.stop_requested()
    assert c.receive(timeout=1) == {"type": "peers", "aps": ["a:1"]}
    assert not srv.send("nobody", {"type": "stop"})
    c.close()
    assert next_event(events).type == "eof"


def test_wrong_token_and_unknown_party_are_rejected(server):
    srv, events = server
    with pytest.raises(ControlError, match="wrong run token"):
        ControlClient(srv.path, "qp", token="other")
    with pytest.raises(ControlError, match="no party named 'zz'"):
        ControlClient(srv.path, "zz", token="tok")
    c = ControlClient(srv.path, "qp", token="tok")
    with pytest.raises(ControlError, match="already connected"):
        ControlClient(srv.path, "qp", token="tok")
    c.close()
    assert events.get(timeout=10).type == "connected"


def test_bad_messages_are_protocol_errors(server):
    srv, events = server
    c = ControlClient(srv.path, "ap0", token="tok")
    assert next_event(events).type == "connected"
    c._sock.sendall(b"{not json}\n")
    ev = next_event(events)
    assert ev.type == "protocol_error" and "bad control message" in ev.data["reason"]
    assert next_event(events).type == "eof"
    c.close()
    c = ControlClient(srv.path, "ap0", token="tok")
    assert next_event(events).type == "connected"
    c._sock.sendall(json.dumps({"type": "exited", "code": 0}).encode() + b"\n")
    ev = next_event(events)
    assert ev.type == "protocol_error" and "unknown control message type" in ev.data["reason"]
    c.close()


def test_guard_reports_exceptions(server):
    srv, events = server
    c = ControlClient(srv.path, "ap0", token="tok")
    with pytest.raises(ZeroDivisionError), c.guard():
        1 / 0
    assert next_event(events).type == "connected"
    ev = next_event(events)
    assert ev.type == "failed" and ev.data["reason"].startswith("ZeroDivisionError")
    c.close()


def test_socket_is_private_and_removed(tmp_path):
    events = queue.Queue()
    srv = ControlServer(tmp_path / "s.sock", "t", events, lambda p, k, h: {})
    assert (srv.path.stat().st_mode & 0o777) == 0o600
    srv.close()
    assert not srv.path.exists()
    with pytest.raises(ControlError, match="cannot reach"):
        ControlClient(tmp_path / "s.sock", "x", token="t")


def test_from_env_requires_launcher(monkeypatch):
    monkeypatch.delenv("CAPC_CONTROL_SOCKET", raising=False)
    with pytest.raises(ControlError, match="not started by the capc launcher"):
        ControlClient.from_env()


def test_too_long_socket_path(tmp_path):
    with pytest.raises(ControlError, match="longer than"):
        ControlServer(tmp_path / ("x" * 120), "t", queue.Queue(), lambda p, k, h: {})
