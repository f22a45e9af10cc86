"""Errors raised by :mod:`capc.net`.

Every error names the peer (party name and/or address) and what went wrong, so that a party process
can print one clear line instead of a traceback.
"""

from __future__ import annotations

from capc.errors import CapcError


class NetError(CapcError):
    """Base class of every error raised by :mod:`capc.net`."""


class ProtocolError(NetError):
    """A peer sent bytes that are not a valid capc frame or message (bad magic, version, type, size,
    truncated frame, schema violation) or sent a message that was not expected at this point."""


class CertificateError(NetError):
    """A certificate or key file is missing, unreadable, expired, or does not carry a capc identity."""


class PeerAuthError(NetError):
    """Mutual authentication failed: the peer's certificate is missing, from another CA, or names a
    party other than the one expected or allowed; or the peer refused our certificate."""


class ChannelTimeout(NetError, TimeoutError):
    """A deadline passed while waiting for a peer; the message names the peer and what was awaited."""


class ChannelClosed(NetError, ConnectionError):
    """The peer closed the connection (at a frame boundary) or the channel was already closed."""


class ConnectError(NetError, ConnectionError):
    """A connection could not be established before the deadline."""


class PeerError(NetError):
    """The peer reported an error with an ``ErrorReply`` message instead of the awaited message."""

    def __init__(self, peer: str, code: str, message: str) -> None:
        super().__init__(f"{peer} reported error {code!r}: {message}")
        self.peer = peer
        self.code = code
        self.remote_message = message
