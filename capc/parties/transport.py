"""The parties' use of :mod:`capc.net`: listen, accept, connect by party name, await a reply.

Addresses come from the run file; identities from the run's PKI. Every wait is bounded by the run's
``timeout``; an idle session may last :data:`IDLE_TIMEOUT` seconds between queries.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, TypeVar

from capc.errors import CapcError
from capc.parties.common import PartyContext

if TYPE_CHECKING:
    from capc.net.channel import Channel
    from capc.net.messages import Message
    from capc.parties.crypto import TwoPartyProvider, TwoPartySession

M = TypeVar("M", bound="Message")

#: How long a party keeps an idle session open between queries (a researcher may pause a run).
IDLE_TIMEOUT = 24 * 3600.0


def listen(ctx: PartyContext, allowed_roles: tuple[str, ...]) -> Any:
    """Bind this party's address from the run file; only the run's parties of ``allowed_roles`` may connect."""
    from capc.net.channel import Listener

    me = ctx.cfg.party(ctx.name)
    allowed = [p.name for p in ctx.cfg.parties if p.role in allowed_roles]
    return Listener(me.host, me.port, tls=ctx.tls(), allowed_peers=allowed, run_id=ctx.cfg.run_id,
                    default_timeout=ctx.cfg.protocol.timeout)


def serve(ctx: PartyContext, allowed_roles: tuple[str, ...], handler: Callable[[Channel, str], None],
          stop: threading.Event, banner: str) -> None:
    """Listen on this party's address, report ``ready`` to the launcher, and run ``handler(channel,
    peer)`` in its own thread for every authenticated connection until ``stop`` is set. A handler that
    raises ends only its own session (logged), never the party."""
    listener = listen(ctx, allowed_roles)
    ctx.report("ready", endpoint=f"{listener.host}:{listener.port}")
    ctx.log.info("listening on %s:%d; %s", listener.host, listener.port, banner)

    def guarded(chan: Channel, peer: str) -> None:
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


def connect_to(ctx: PartyContext, peer: str) -> Channel:
    """A mutual-TLS channel to party ``peer`` (retrying until the run's timeout while it starts)."""
    from capc.net.channel import connect

    entry = ctx.cfg.party(peer)
    return connect(entry.host, entry.port, ctx.tls(), peer, deadline=ctx.cfg.protocol.timeout,
                   run_id=ctx.cfg.run_id, default_timeout=ctx.cfg.protocol.timeout)


def expect(chan: Channel, kind: type[M], timeout: float, what: str) -> M:
    """Receive one message of type ``kind``; a peer's ErrorReply becomes a :class:`PeerRefused`."""
    from capc.net.errors import PeerError

    try:
        return chan.recv(kind, timeout=timeout)
    except PeerError as exc:
        raise PeerRefused(f"while awaiting {what}: {exc}", code=exc.code) from None


def shutdown(chan: Channel, reason: str) -> None:
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


@dataclass
class Link:
    """One party's typed connection to one peer: the channel, the 2PC session on it (opened at its
    first circuit, reused after), and whether the peer is still taking part (with why not)."""

    name: str
    chan: Channel
    mpc: TwoPartyProvider
    role: str  # this side's 2PC role: "evaluator" (QP) or "garbler" (AP, PG)
    timeout: float
    session: TwoPartySession | None = None
    alive: bool = True
    failure: str = ""

    def send(self, msg: Message) -> None:
        self.chan.send(msg)

    def expect(self, kind: type[M], what: str) -> M:
        """The peer's next message, of type ``kind``; its ErrorReply raises :class:`PeerRefused`."""
        return expect(self.chan, kind, self.timeout, what)

    def gc(self) -> TwoPartySession:
        """The 2PC session on this channel, opened on first use."""
        if self.session is None:
            self.session = self.mpc.session(self.chan.raw_io(), self.role)
        return self.session

    def drop(self, reason: str) -> None:
        """The peer failed: it takes no further part."""
        self.alive = False
        self.failure = reason

    def close(self, reason: str) -> None:
        """End the 2PC session and tell the peer we are done."""
        if self.session is not None:
            self.session.close()
            self.session = None
        shutdown(self.chan, reason)
