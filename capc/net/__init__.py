"""capc.net — authenticated channels between CaPC parties.

* :mod:`capc.net.names` — party names and roles (``qp-0``, ``ap-1``, ``pg``);
* :mod:`capc.net.certs` — the per-run CA and party certificates (``capc certs``);
* :mod:`capc.net.tls` — mutual TLS 1.3 contexts and peer identity checks;
* :mod:`capc.net.framing` — length-prefixed frames with per-type size limits;
* :mod:`capc.net.messages` — the protocol's typed message schemas and their encoding;
* :mod:`capc.net.channel` — channels, ``connect``, ``Listener``, in-memory ``channel_pair``;
* :mod:`capc.net.deadline` — deadlines bounding every wait;
* :mod:`capc.net.errors` — the errors all of these raise.
"""

from capc.net.certs import build_certs_parser, cmd_certs, make_run_pki
from capc.net.channel import Channel, Listener, RawIO, Refusal, channel_pair, connect
from capc.net.deadline import Deadline
from capc.net.errors import (CertificateError, ChannelClosed, ChannelTimeout, ConnectError, NetError,
                             PeerAuthError, PeerError, ProtocolError)
from capc.net.framing import PROTOCOL_VERSION, MessageType
from capc.net.messages import (BudgetReserved, ErrorReply, GcStart, Hello, HelloAck, Message,
                               ModelPlan, NoisyArgmaxRequest,
                               PublicContext, QueryRequest, QueryResult, SchemaError, Shutdown,
                               StepDone, VoteShare, decode_message, encode_message)
from capc.net.names import parse_party_name, role_of
from capc.net.tls import PartyTLS

__all__ = [
    "BudgetReserved", "CertificateError", "Channel", "ChannelClosed", "ChannelTimeout", "ConnectError", "Deadline",
    "ErrorReply", "GcStart", "Hello", "HelloAck", "Listener", "Message", "MessageType", "ModelPlan", "NetError",
    "NoisyArgmaxRequest", "PROTOCOL_VERSION", "PartyTLS", "PeerAuthError", "PeerError",
    "ProtocolError", "PublicContext", "QueryRequest", "QueryResult", "RawIO", "Refusal",
    "SchemaError", "Shutdown", "StepDone", "VoteShare", "build_certs_parser", "channel_pair",
    "cmd_certs", "connect", "decode_message", "encode_message", "make_run_pki", "parse_party_name",
    "role_of",
]
