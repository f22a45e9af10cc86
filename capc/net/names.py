"""Party names and roles.

A party's identity is its name, which also encodes its role: ``qp-<i>`` (querying party),
``ap-<i>`` (answering party), and ``pg`` or ``pg-<i>`` (privacy guardian), where ``<i>`` is a decimal
index without leading zeros. The name is the certificate's subject common name and its SAN URI
``capc://party/<name>`` (see :mod:`capc.net.certs`).
"""

from __future__ import annotations

import re

from capc.net.errors import NetError

ROLES = ("qp", "ap", "pg")
PARTY_URI_PREFIX = "capc://party/"

_NAME_RE = re.compile(r"^(?:(qp|ap)-(0|[1-9][0-9]{0,5})|(pg)(?:-(0|[1-9][0-9]{0,5}))?)$")


class PartyNameError(NetError, ValueError):
    """A string is not a valid capc party name."""


def parse_party_name(name: object) -> tuple[str, int | None]:
    """Split a party name into ``(role, index)``; the index is ``None`` for a bare ``pg``.

    Raises :class:`PartyNameError` naming the bad value when ``name`` is not ``qp-<i>``, ``ap-<i>``,
    ``pg`` or ``pg-<i>``.
    """
    if not isinstance(name, str):
        raise PartyNameError(f"party name must be a string, got {type(name).__name__}")
    m = _NAME_RE.fullmatch(name)
    if m is None:
        raise PartyNameError(
            f"invalid party name {name!r}: expected qp-<i>, ap-<i>, pg or pg-<i> (i a decimal index)")
    if m.group(1):
        return m.group(1), int(m.group(2))
    return "pg", (int(m.group(4)) if m.group(4) is not None else None)


def role_of(name: str) -> str:
    """Return the role (``"qp"``, ``"ap"`` or ``"pg"``) encoded in a party name."""
    return parse_party_name(name)[0]


def party_uri(name: str) -> str:
    """Return the certificate SAN URI that carries a party's identity: ``capc://party/<name>``."""
    parse_party_name(name)
    return PARTY_URI_PREFIX + name
