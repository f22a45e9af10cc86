"""Authenticated message channels between capc parties.

* :class:`Channel` sends and receives framed, typed messages over a connected socket (mutual TLS in
  real runs, a plain socketpair in unit tests — the party code cannot tell the difference, like a
  swappable communicator), with a deadline on every wait. Between messages a garbled-circuit engine
  may run its own byte stream over the same socket through :meth:`Channel.raw_io`.
* :func:`connect` (client) and :class:`Listener` (server) establish channels: TCP, TLS 1.3 with
  certificates from the run CA, a check of the peer's party identity, then a ``Hello``/``HelloAck``
  exchange that also checks the run id and protocol version. Refusals are reported clearly on both
  sides (the refused side receives an ``ErrorReply`` or a TLS alert naming the reason).
* :func:`channel_pair` returns two connected in-memory channels.

A channel is not thread-safe: use it from one thread at a time.
"""

from __future__ import annotations

import errno
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TypeVar

from capc.net.deadline import Deadline
from capc.net.errors import (ChannelClosed, ChannelTimeout, ConnectError, NetError, PeerAuthError,
                             PeerError, ProtocolError)
from capc.net.framing import PROTOCOL_VERSION, MessageType, UnexpectedFrame, pack_header, read_frame
from capc.net.messages import (MESSAGE_CLASSES, ErrorReply, Hello, HelloAck, Message, decode_message,
                               encode_message, validate_run_id)
from capc.net.names import role_of
from capc.net.tls import PartyTLS, check_peer, describe_tls_error

log = logging.getLogger("capc.net")

M = TypeVar("M", bound=Message)

DEFAULT_TIMEOUT = 60.0
_SEND_CHUNK = 1 << 20
_RAW_BUFFER = 64 << 10
#: ErrorReply codes that mean "you were not let in"; a client turns them into PeerAuthError.
AUTH_REFUSAL_CODES = frozenset({"peer_not_allowed", "identity_mismatch", "run_mismatch",
                                "version_mismatch", "unexpected_peer"})


def _io_error(exc: BaseException, peer: str, doing: str) -> NetError:
    """Translate a socket/TLS exception into the capc error that explains it."""
    if isinstance(exc, (ssl.SSLZeroReturnError, ssl.SSLEOFError)):
        return ChannelClosed(f"{peer} closed the connection while {doing}")
    if isinstance(exc, ssl.SSLError):
        reason = describe_tls_error(exc)
        if "alert" in reason:
            return PeerAuthError(f"{peer} ended the TLS session while {doing}: {reason}")
        return ChannelClosed(f"TLS error with {peer} while {doing}: {reason}")
    if isinstance(exc, (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)):
        return ChannelClosed(f"connection to {peer} was reset while {doing}")
    return ChannelClosed(f"I/O error with {peer} while {doing}: {exc}")


def linger_close(sock: socket.socket, timeout: float = 1.0, limit: int = 1 << 20) -> None:
    """Close without provoking a TCP reset: stop sending, discard what the peer still sends (at most
    ``limit`` bytes, ``timeout`` seconds) until it closes, then close.

    Closing a socket that holds unread data makes the kernel send RST, which can destroy our last
    words (an ``ErrorReply`` or a TLS alert) before the peer reads them.
    """
    plain = sock
    try:
        if isinstance(sock, ssl.SSLSocket):
            plain = socket.socket(fileno=sock.detach())  # drain the raw bytes, no TLS needed
        plain.shutdown(socket.SHUT_WR)
        dl = Deadline(timeout)
        drained = 0
        while drained < limit:
            remaining = dl.remaining()
            if remaining <= 0:
                break
            plain.settimeout(remaining)
            chunk = plain.recv(65536)
            if not chunk:
                break
            drained += len(chunk)
    except OSError:
        pass
    finally:
        try:
            plain.close()
        except OSError:
            pass


class RawIO:
    """Byte-stream view of a channel for a garbled-circuit engine: ``sendall`` / ``recv_into``.

    Each call waits at most ``timeout`` seconds for progress (an idle timeout: a long 2PC run is fine
    as long as bytes keep flowing). A timeout or I/O error leaves the channel unusable, because the
    stream position is then unknown.

    Unbuffered by default: ``sendall`` writes at once, so a party can never leave its last 2PC bytes
    behind while it turns to another channel. With ``buffered=True`` (for engines that make many tiny
    writes and do not buffer themselves) bytes are queued and go out once 64 KiB are pending, on
    :meth:`flush`, before any read or framed message on this channel, or on close.
    """

    def __init__(self, channel: Channel, timeout: float, buffered: bool = False) -> None:
        self._ch = channel
        self.timeout = timeout
        self.buffered = buffered

    def sendall(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data`` (or queue it, when buffered); the bytes are copied before returning."""
        self._ch._check_usable()
        view = memoryview(data).cast("B")
        if not self.buffered:
            dl = Deadline(self.timeout)
            self._ch._flush_raw(dl)
            self._ch._send_bytes(view, dl, "sending 2PC bytes")
            return
        pending = self._ch._raw_pending
        pending += view
        if len(pending) >= _RAW_BUFFER:
            self.flush()

    def recv_into(self, buffer: bytearray | memoryview, nbytes: int = 0) -> int:
        """Read up to ``nbytes`` (default: the buffer's size) bytes; return how many, 0 at end of stream."""
        view = memoryview(buffer).cast("B")
        if nbytes:
            view = view[:nbytes]
        if len(view) == 0:
            return 0
        self.flush()
        return self._ch._recv_some(view, Deadline(self.timeout), "2PC bytes")

    def recv_exact(self, n: int) -> bytes:
        """Read exactly ``n`` bytes or raise :class:`ChannelClosed` if the stream ends first."""
        buf = bytearray(n)
        view = memoryview(buf)
        got = 0
        while got < n:
            k = self.recv_into(view[got:])
            if k == 0:
                raise ChannelClosed(f"{self._ch.peer} closed the connection after {got} of {n} "
                                    "2PC bytes")
            got += k
        return bytes(buf)

    def flush(self) -> None:
        """Send all queued bytes now."""
        self._ch._flush_raw(Deadline(self.timeout))

    def unread(self, data: bytes) -> None:
        """Put back bytes an engine read ahead of its protocol's end: the channel's next read (raw or
        framed) returns them first, so a message the peer sent right after its last 2PC byte is not
        lost in the engine's buffer."""
        self._ch._pushback[:0] = bytes(data)


class Channel:
    """Framed, typed messages over a connected stream socket, with deadlines and byte counters.

    Args:
        sock: a connected socket (``ssl.SSLSocket`` after the handshake, or a plain socket).
        peer: the authenticated party name of the other end (used in every error message).
        local: this party's name (informational).
        address: the peer's address, for messages.
        default_timeout: seconds a ``send``/``recv``/raw operation waits when no timeout is given.
    """

    def __init__(self, sock: socket.socket, peer: str, *, local: str = "", address: str = "",
                 default_timeout: float = DEFAULT_TIMEOUT) -> None:
        self._sock = sock
        self.peer = peer
        self.local = local
        self.address = address
        self.default_timeout = default_timeout
        self.bytes_sent = 0
        self.bytes_received = 0
        self.messages_sent = 0
        self.messages_received = 0
        self._broken: str | None = None
        self._closed = False
        self._raw_pending = bytearray()  # RawIO bytes not yet written
        self._pushback = bytearray()  # bytes a 2PC engine read ahead and gave back (RawIO.unread)

    # -------------------------------------------------------------- public API

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def stats(self) -> dict[str, int]:
        """Byte and message counters (bytes include frame headers and raw 2PC bytes)."""
        return {"bytes_sent": self.bytes_sent, "bytes_received": self.bytes_received,
                "messages_sent": self.messages_sent, "messages_received": self.messages_received}

    def send(self, msg: Message, timeout: float | None = None) -> None:
        """Send one message, waiting at most ``timeout`` seconds (default: ``default_timeout``)."""
        mtype, payload = encode_message(msg)
        head = pack_header(mtype, len(payload))
        deadline = Deadline(self.default_timeout if timeout is None else timeout)
        self._flush_raw(deadline)
        what = f"sending {mtype.name}"
        if len(payload) <= _SEND_CHUNK:
            # one write for small frames: one TLS record, no header-only segment on the wire
            self._send_bytes(memoryview(head + payload), deadline, what)
        else:
            self._send_bytes(memoryview(head), deadline, what)
            self._send_bytes(memoryview(payload), deadline, what)
        self.messages_sent += 1
        if log.isEnabledFor(logging.DEBUG):  # --debug: one line per message, sizes only (no contents)
            log.debug("sent %s to %s (%d bytes)", mtype.name, self.peer, len(head) + len(payload))

    def recv(self, expected: type[M] | tuple[type[M], ...] | None = None,
             timeout: float | None = None) -> M:
        """Receive the next message, which must be one of the ``expected`` message classes.

        Raises:
            ChannelTimeout: nothing complete arrived within ``timeout`` seconds.
            PeerError: the peer sent an ``ErrorReply`` (unless ``ErrorReply`` is expected).
            ProtocolError: a malformed frame or payload, or a frame of an unexpected type (refused
                from its header, before its payload is read); the peer is sent an ``ErrorReply`` and
                the channel is closed.
            ChannelClosed: the peer closed the connection.
        """
        kinds: tuple[type[Message], ...] = (
            () if expected is None else (expected,) if isinstance(expected, type) else tuple(expected))
        want = " or ".join(k.__name__ for k in kinds) or "any message"
        # An ErrorReply (small) is always acceptable: it is how a peer tells us why it gives up.
        wire_types = frozenset({k.TYPE for k in kinds} | {MessageType.ERROR_REPLY}) if kinds else None
        deadline = Deadline(self.default_timeout if timeout is None else timeout)
        self._check_usable()
        self._flush_raw(deadline)
        got = [0]  # bytes of this frame read so far: a timeout before the first byte is harmless

        def recv_into(view: memoryview) -> int:
            n = self._recv_some(view, deadline, want, mid_frame=got[0] > 0)
            got[0] += n
            return n

        try:
            header, payload = read_frame(recv_into, wire_types)
            msg = decode_message(header.type, payload)
        except UnexpectedFrame as e:
            # the unread payload leaves the stream unusable: refuse and close, as for a bad frame
            e = ProtocolError(f"expected {want}, got {MESSAGE_CLASSES[e.got].__name__} (a frame announcing "
                              f"{e.length} payload bytes, refused from its header without reading it)")
            self._protocol_failure(e)
            raise ProtocolError(f"from {self.peer}: {e}") from None
        except ProtocolError as e:
            self._protocol_failure(e)
            raise ProtocolError(f"from {self.peer}: {e}") from None
        except ChannelClosed as e:
            self._broken = str(e)
            if got[0] == 0:
                raise ChannelClosed(f"{self.peer} closed the connection while we awaited {want}") \
                    from None
            raise
        self.messages_received += 1
        if log.isEnabledFor(logging.DEBUG):
            log.debug("received %s from %s (%d bytes)", type(msg).__name__, self.peer, got[0])
        if kinds and not isinstance(msg, kinds):
            if isinstance(msg, ErrorReply):
                raise PeerError(self.peer, msg.code, msg.message)
            raise ProtocolError(f"expected {want} from {self.peer}, got {type(msg).__name__}")
        return msg  # type: ignore[return-value]

    def raw_io(self, timeout: float | None = None, *, buffered: bool = False) -> RawIO:
        """Return the byte-stream view for a 2PC engine (see :class:`RawIO`)."""
        self._check_usable()
        return RawIO(self, self.default_timeout if timeout is None else timeout, buffered)

    def fail(self, code: str, message: str, timeout: float = 1.0) -> None:
        """Tell the peer why we give up (best effort, an ``ErrorReply``) and close the channel."""
        if self._closed:
            return
        try:
            if self._broken is None:
                self.send(ErrorReply(code=code, message=message[:4096]), timeout=timeout)
        except NetError:
            pass
        self._closed = True
        linger_close(self._sock, timeout)

    def close(self) -> None:
        """Close the socket; further use raises :class:`ChannelClosed`."""
        if self._closed:
            return
        if self._raw_pending and self._broken is None:
            try:  # an engine's last bytes must not be lost because nobody flushed them
                self._flush_raw(Deadline(1.0))
            except NetError:
                pass
        self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> Channel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("broken" if self._broken else "open")
        return f"<Channel {self.local or '?'} <-> {self.peer} {self.address} {state}>"

    # -------------------------------------------------------------- internals

    def _check_usable(self) -> None:
        if self._closed:
            raise ChannelClosed(f"channel to {self.peer} is closed")
        if self._broken is not None:
            raise ChannelClosed(f"channel to {self.peer} is unusable: {self._broken}")

    def _flush_raw(self, deadline: Deadline) -> None:
        if self._raw_pending:
            data, self._raw_pending = self._raw_pending, bytearray()
            self._send_bytes(memoryview(data), deadline, "sending 2PC bytes")

    def _protocol_failure(self, exc: ProtocolError) -> None:
        """The byte stream can no longer be trusted: tell the peer and close."""
        self._broken = f"protocol error: {exc}"
        try:
            reply = ErrorReply(code="protocol_error", message=f"{self.local or 'peer'} refused your "
                               f"message: {exc}"[:4096])
            mtype, payload = encode_message(reply)
            dl = Deadline(1.0)
            self._send_bytes(memoryview(pack_header(mtype, len(payload))), dl, "reporting an error",
                             force=True)
            self._send_bytes(memoryview(payload), dl, "reporting an error", force=True)
        except NetError:
            pass
        if not self._closed:
            self._closed = True
            linger_close(self._sock, 1.0)

    def _send_bytes(self, view: memoryview, deadline: Deadline, what: str, force: bool = False) -> None:
        if not force:
            self._check_usable()
        off, total = 0, len(view)
        while off < total:
            remaining = deadline.remaining()
            if remaining <= 0:
                self._broken = f"timed out while {what}"
                raise ChannelTimeout(f"timed out after {deadline.seconds:g}s {what} to {self.peer} "
                                     f"({off} of {total} bytes sent)")
            try:
                self._sock.settimeout(remaining)
                n = self._sock.send(view[off:off + _SEND_CHUNK])
            except (socket.timeout, TimeoutError):
                continue  # the loop re-checks the deadline and raises ChannelTimeout
            except (OSError, ssl.SSLError) as e:
                self._broken = f"I/O error while {what}"
                raise _io_error(e, self.peer, what) from None
            off += n
            self.bytes_sent += n

    def _recv_some(self, view: memoryview, deadline: Deadline, want: str, mid_frame: bool = True) -> int:
        """One ``recv_into`` bounded by the deadline; 0 means end of stream."""
        self._check_usable()
        if self._pushback:  # bytes a 2PC engine read ahead and gave back (RawIO.unread)
            n = min(len(view), len(self._pushback))
            view[:n] = self._pushback[:n]
            del self._pushback[:n]
            return n
        while True:
            remaining = deadline.remaining()
            if remaining <= 0:
                if mid_frame:
                    self._broken = f"timed out in the middle of {want}"
                raise ChannelTimeout(f"timed out after {deadline.seconds:g}s waiting for {want} "
                                     f"from {self.peer}")
            try:
                self._sock.settimeout(remaining)
                n = self._sock.recv_into(view)
            except (socket.timeout, TimeoutError):
                continue
            except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                n = 0
            except (OSError, ssl.SSLError) as e:
                self._broken = f"I/O error while receiving {want}"
                raise _io_error(e, self.peer, f"receiving {want}") from None
            self.bytes_received += n
            return n


def channel_pair(a: str = "qp-0", b: str = "ap-1", *,
                 default_timeout: float = 10.0) -> tuple[Channel, Channel]:
    """Two connected in-memory channels (a Unix socketpair): ``a``'s end and ``b``'s end.

    The kernel buffers only a few hundred KiB, so a test that sends a large message must receive it
    from another thread.
    """
    s1, s2 = socket.socketpair()
    return (Channel(s1, peer=b, local=a, address="socketpair", default_timeout=default_timeout),
            Channel(s2, peer=a, local=b, address="socketpair", default_timeout=default_timeout))


# ------------------------------------------------------------------ establishing channels

_RETRYABLE_ERRNOS = {errno.ECONNREFUSED, errno.ECONNRESET, errno.ECONNABORTED, errno.ETIMEDOUT,
                     errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EAGAIN}


def connect(host: str, port: int, tls: PartyTLS, expected_peer: str,
            deadline: Deadline | float = 30.0, *, run_id: str,
            default_timeout: float = DEFAULT_TIMEOUT,
            on_retry: Callable[[int, BaseException], None] | None = None) -> Channel:
    """Connect to party ``expected_peer`` at ``host:port`` and return an authenticated channel.

    Retries the TCP connection with exponential backoff (50 ms doubling to 1 s) until ``deadline``
    (a :class:`Deadline` or seconds from now), so a client may start before its server. Then runs the
    TLS 1.3 handshake, checks that the server's certificate names ``expected_peer``, sends ``Hello``
    and waits for ``HelloAck``.

    ``on_retry(attempt, error)``, if given, is called after each failed TCP attempt (for progress
    messages such as "waiting for pg").

    Raises:
        ConnectError: no server accepted before the deadline (names the last error).
        PeerAuthError: the server's certificate is wrong, or the server refused ours.
    """
    validate_run_id(run_id)
    role_of(expected_peer)
    dl = Deadline.coerce(deadline)
    where = f"{expected_peer} at {host}:{port}"
    raw = _tcp_connect(host, port, dl, where, on_retry)
    try:
        sock = tls.client_context.wrap_socket(raw, server_side=False, do_handshake_on_connect=False)
    except (OSError, ssl.SSLError) as e:
        raw.close()
        raise ConnectError(f"cannot start TLS with {where}: {e}") from None
    try:
        sock.settimeout(max(dl.remaining(), 0.001))
        sock.do_handshake()
    except ssl.SSLCertVerificationError as e:
        sock.close()
        raise PeerAuthError(f"refused the certificate of {where}: {describe_tls_error(e)}") from None
    except (socket.timeout, TimeoutError):
        sock.close()
        raise ConnectError(f"TLS handshake with {where} did not finish within {dl.seconds:g}s") from None
    except ssl.SSLError as e:
        sock.close()
        raise PeerAuthError(f"TLS handshake with {where} failed: {describe_tls_error(e)}") from None
    except OSError as e:
        sock.close()
        raise ConnectError(f"connection to {where} failed during the TLS handshake: {e}") from None

    ch = Channel(sock, peer=expected_peer, local=tls.name, address=f"{host}:{port}",
                 default_timeout=default_timeout)
    try:
        check_peer(sock, expected_peer, f"connecting to {where}")
    except PeerAuthError as e:
        ch.fail("unexpected_peer", f"{tls.name} expected to reach {expected_peer}: {e}")
        raise
    hello = Hello(party=tls.name, role=role_of(tls.name), run_id=run_id)
    try:
        try:
            ch.send(hello, timeout=max(dl.remaining(), 0.001))
        except ChannelClosed:
            # The server may already have refused us; its reason (alert or ErrorReply) may still be
            # readable, and is more useful than "connection closed".
            ch._broken = None
        ack = ch.recv(HelloAck, timeout=max(dl.remaining(), 0.001))
    except PeerError as e:
        ch.close()
        if e.code in AUTH_REFUSAL_CODES:
            raise PeerAuthError(f"{where} refused {tls.name}: {e.remote_message}") from None
        raise
    except PeerAuthError as e:
        ch.close()
        raise PeerAuthError(f"{where} refused {tls.name}'s certificate: {e}") from None
    except ChannelTimeout:
        ch.close()
        raise ConnectError(f"{where} did not answer our Hello within {dl.seconds:g}s") from None
    except NetError as e:
        ch.close()
        raise ConnectError(f"capc handshake with {where} failed: {e}") from None
    if ack.party != expected_peer or ack.run_id != run_id or ack.protocol_version != PROTOCOL_VERSION:
        ch.fail("identity_mismatch", "HelloAck does not match the connection")
        raise PeerAuthError(f"{where} answered as {ack.party!r}, run {ack.run_id!r}, version "
                            f"{ack.protocol_version}; expected {expected_peer!r}, run {run_id!r}, "
                            f"version {PROTOCOL_VERSION}")
    return ch


def _no_delay(sock: socket.socket) -> None:
    """Disable Nagle: protocol steps are request/reply, and Nagle plus delayed ACKs would add ~40 ms
    to every small message."""
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def _tcp_connect(host: str, port: int, dl: Deadline, where: str,
                 on_retry: Callable[[int, BaseException], None] | None) -> socket.socket:
    backoff, attempts = 0.05, 0
    last: BaseException | None = None
    while True:
        attempts += 1
        try:
            sock = socket.create_connection((host, port), timeout=max(min(dl.remaining(), 5.0), 0.001))
            _no_delay(sock)
            return sock
        except socket.gaierror as e:
            raise ConnectError(f"cannot resolve host of {where}: {e}") from None
        except (socket.timeout, TimeoutError) as e:
            last = e
        except OSError as e:
            if e.errno not in _RETRYABLE_ERRNOS:
                raise ConnectError(f"cannot connect to {where}: {e}") from None
            last = e
        if on_retry is not None and last is not None:
            on_retry(attempts, last)
        remaining = dl.remaining()
        if remaining <= 0:
            raise ConnectError(f"could not connect to {where} within {dl.seconds:g}s "
                               f"({attempts} attempts; last error: {last})")
        time.sleep(min(backoff, remaining))
        backoff = min(backoff * 2, 1.0)


@dataclass(frozen=True)
class Refusal:
    """A connection the listener refused: who (if known), from where, and why."""

    address: str
    peer: str | None
    reason: str


class Listener:
    """Accepts authenticated channels from allowed parties on ``host:port``.

    Binds to ``host`` exactly (default ``127.0.0.1``, never all interfaces unless asked);
    ``port=0`` picks a free port, reported by :attr:`port`. Connections that fail authentication are
    refused with a reason sent to the peer, logged, kept in :attr:`refusals`, and the listener keeps
    serving.

    Args:
        tls: this party's credentials.
        allowed_peers: party names allowed to connect (``None``: any party of the run CA).
        run_id: the run id clients must present in their ``Hello``.
        handshake_timeout: seconds a connecting client has to finish TLS and ``Hello``.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, tls: PartyTLS,
                 allowed_peers: Iterable[str] | None, run_id: str, backlog: int = 64,
                 handshake_timeout: float = 10.0, default_timeout: float = DEFAULT_TIMEOUT) -> None:
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
        self.tls = tls
        self.allowed = None if allowed_peers is None else frozenset(allowed_peers)
        for name in self.allowed or ():
            role_of(name)  # validates the name
        self.run_id = validate_run_id(run_id)
        self.handshake_timeout = handshake_timeout
        self.default_timeout = default_timeout
        self.refusals: deque[Refusal] = deque(maxlen=100)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        try:
            self._sock = socket.create_server((host, port), family=family, backlog=backlog)
        except OSError as e:
            raise ConnectError(f"{tls.name} cannot listen on {host}:{port}: {e}") from None
        self.host = host
        self.port: int = self._sock.getsockname()[1]

    @property
    def address(self) -> str:
        """``host:port`` actually bound."""
        return f"{self.host}:{self.port}"

    def _allowed_desc(self) -> str:
        return "any run party" if self.allowed is None else ", ".join(sorted(self.allowed))

    def accept(self, timeout: float | None = None) -> tuple[Channel, str]:
        """Wait for the next authenticated connection; return ``(channel, peer_name)``.

        Refused connections are skipped (see :attr:`refusals`). Raises :class:`ChannelTimeout` when
        ``timeout`` (default: ``default_timeout``) passes first; the message lists recent refusals.
        """
        dl = Deadline(self.default_timeout if timeout is None else timeout)
        first_refusal = len(self.refusals)
        while True:
            remaining = dl.remaining()
            if remaining <= 0:
                refused = list(self.refusals)[first_refusal:] if first_refusal < len(self.refusals) \
                    else []
                extra = ("; refused meanwhile: " + "; ".join(f"{r.address} ({r.reason})"
                                                             for r in refused[-3:])) if refused else ""
                raise ChannelTimeout(f"{self.tls.name} timed out after {dl.seconds:g}s waiting on "
                                     f"{self.address} for a connection from {self._allowed_desc()}"
                                     f"{extra}")
            try:
                self._sock.settimeout(remaining)
                raw, addr = self._sock.accept()
            except (socket.timeout, TimeoutError):
                continue
            except OSError as e:
                raise ChannelClosed(f"listener {self.address} failed: {e}") from None
            _no_delay(raw)
            result = self._handshake(raw, f"{addr[0]}:{addr[1]}", dl)
            if result is not None:
                return result

    def _refuse(self, address: str, peer: str | None, reason: str) -> None:
        log.warning("%s refused connection from %s%s: %s", self.tls.name, address,
                    f" ({peer})" if peer else "", reason)
        self.refusals.append(Refusal(address=address, peer=peer, reason=reason))

    def _handshake(self, raw: socket.socket, address: str, dl: Deadline) -> tuple[Channel, str] | None:
        hs = Deadline(min(self.handshake_timeout, max(dl.remaining(), 1.0)))
        try:
            sock = self.tls.server_context.wrap_socket(raw, server_side=True,
                                                       do_handshake_on_connect=False)
        except (OSError, ssl.SSLError) as e:
            raw.close()
            self._refuse(address, None, f"cannot start TLS: {e}")
            return None
        try:
            sock.settimeout(max(hs.remaining(), 0.001))
            sock.do_handshake()
        except (socket.timeout, TimeoutError):
            sock.close()
            self._refuse(address, None, f"TLS handshake not finished within {hs.seconds:g}s")
            return None
        except (OSError, ssl.SSLError) as e:
            linger_close(sock)
            self._refuse(address, None, f"TLS handshake failed: {describe_tls_error(e)}")
            return None
        try:
            claimed = check_peer(sock, None, f"connection from {address}")
        except PeerAuthError as e:
            Channel(sock, peer=address, local=self.tls.name).fail("peer_not_allowed", str(e))
            self._refuse(address, None, str(e))
            return None
        ch = Channel(sock, peer=claimed, local=self.tls.name, address=address,
                     default_timeout=self.default_timeout)
        if self.allowed is not None and claimed not in self.allowed:
            reason = (f"party {claimed!r} is not allowed to connect to {self.tls.name} "
                      f"(allowed: {self._allowed_desc()})")
            ch.fail("peer_not_allowed", reason)
            self._refuse(address, claimed, reason)
            return None
        try:
            hello = ch.recv(Hello, timeout=max(hs.remaining(), 0.001))
        except NetError as e:
            ch.close()
            self._refuse(address, claimed, f"no valid Hello: {e}")
            return None
        problem = None
        code = ""
        if hello.party != claimed:
            code, problem = "identity_mismatch", (f"Hello names {hello.party!r} but the certificate "
                                                  f"names {claimed!r}")
        elif hello.run_id != self.run_id:
            code, problem = "run_mismatch", (f"run id {hello.run_id!r} does not match this run "
                                             f"({self.run_id!r})")
        elif hello.protocol_version != PROTOCOL_VERSION:
            code, problem = "version_mismatch", (f"protocol version {hello.protocol_version} is not "
                                                 f"{PROTOCOL_VERSION}")
        if problem is not None:
            ch.fail(code, problem)
            self._refuse(address, claimed, problem)
            return None
        try:
            ch.send(HelloAck(party=self.tls.name, run_id=self.run_id),
                    timeout=max(hs.remaining(), 0.001))
        except NetError as e:
            ch.close()
            self._refuse(address, claimed, f"could not answer Hello: {e}")
            return None
        log.info("%s accepted %s from %s", self.tls.name, claimed, address)
        return ch, claimed

    def close(self) -> None:
        """Stop listening."""
        try:
            self._sock.close()
        except OSError:
            pass

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
