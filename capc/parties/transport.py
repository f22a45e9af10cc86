"""The parties' use of :mod:`capc.net`: listen, accept, connect by party name, await a reply.

Addresses come from the run file; identities from the run's PKI. Every wait is bounded by the run's
``timeout``; an idle session may last :data:`IDLE_TIMEOUT` seconds between queries.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from capc.errors import CapcError
from capc.parties.common import PartyContext

#: How long a party keeps an idle session open between queries (a researcher may pause a run).
IDLE_TIMEOUT = 24 * 3600.0


def listen(ctx: PartyContext, allowed_roles: tuple[str, ...]) -> Any:
    """Bind this party's address from the run file; only the run's parties of ``allowed_roles`` may connect."""
    from capc.net.channel import Listener

    me = ctx.cfg.party(ctx.name)
    allowed = [p.name for p in ctx.cfg.parties if p.role in allowed_roles]
    return Listener(me.host, me.port, tls=ctx.tls(), allowed_peers=allowed, run_id=ctx.cfg.run_id,
                    default_timeout=ctx.cfg.protocol.timeout)


def serve(ctx: PartyContext, allowed_roles: tuple[str, ...], handler: Callable[[Any, str], None],
          stop: threading.Event, banner: str) -> None:
    """Listen on this party's address, report ``ready`` to the launcher, and run ``handler(channel,
    peer)`` in its own thread for every authenticated connection until ``stop`` is set. A handler that
    raises ends only its own session (logged), never the party."""
    listener = listen(ctx, allowed_roles)
    ctx.report("ready", endpoint=f"{listener.host}:{listener.port}")
    ctx.log.info("listening on %s:%d; %s", listener.host, listener.port, banner)

    def guarded(chan: Any, peer: str) -> None:
        try:
            handler(chan, peer)
        except Exception as exc:  # one bad peer must not take the party down
            ctx.log.warning("session with %s ended: %s", peer, exc)

    try:
        while not stop.is_set():
            accepted = accept(listener, timeout=0.5)  # bounded, so that a stop is seen promptly
            if accepted is not None:
                threading.Thread(target=guarded, args=accepted, daemon=True).start()
    finally:
        listener.close()


def accept(listener: Any, timeout: float) -> tuple[Any, str] | None:
    """The next authenticated channel, or None when ``timeout`` passes first."""
    from capc.net.errors import ChannelTimeout

    try:
        return listener.accept(timeout=timeout)
    except ChannelTimeout:
        return None


def connect_to(ctx: PartyContext, peer: str) -> Any:
    """A mutual-TLS channel to party ``peer`` (retrying until the run's timeout while it starts)."""
    from capc.net.channel import connect

    entry = ctx.cfg.party(peer)
    return connect(entry.host, entry.port, ctx.tls(), peer, deadline=ctx.cfg.protocol.timeout,
                   run_id=ctx.cfg.run_id, default_timeout=ctx.cfg.protocol.timeout)


def expect(chan: Any, kind: type, timeout: float, what: str) -> Any:
    """Receive one message of type ``kind``; a peer's ErrorReply becomes a :class:`PeerRefused`."""
    from capc.net.errors import PeerError

    try:
        return chan.recv(kind, timeout=timeout)
    except PeerError as exc:
        raise PeerRefused(f"while awaiting {what}: {exc}", code=exc.code) from None


def shutdown(chan: Any, reason: str) -> None:
    """Tell the peer we are done (best effort) and close."""
    from capc.net.messages import Shutdown

    try:
        chan.send(Shutdown(reason=reason), timeout=1.0)
    except Exception:
        pass
    try:
        chan.close()
    except Exception:
        pass


class PeerRefused(CapcError):
    """The peer answered with an ErrorReply (e.g. a refused query or an exhausted budget); ``code``
    is its :class:`~capc.net.messages.ErrorCode` value."""

    def __init__(self, message: str, code: str = "refused") -> None:
        super().__init__(message)
        self.code = code
