"""roost reaches into private parts of aioice, aiortc and pylibsrtp; if an upgrade moves
them, this fails first and says which (pyproject.toml bounds the versions for that reason)."""

from __future__ import annotations

import inspect

import aioice
import aiortc
import pytest
from aioice import Connection
from aioice.ice import StunProtocol
from aiortc import RTCDtlsTransport, RTCSctpTransport


def _source(obj: object) -> str:
    return inspect.getsource(obj)  # type: ignore[arg-type]


def test_aioice_connection_internals_roost_uses() -> None:
    init = _source(Connection.__init__)
    for name in ("_protocols", "_local_candidates", "_nominated", "_closing",
                 "_remote_candidates_end", "_local_candidates_start", "_local_candidates_end"):
        assert f"self.{name}" in init, \
            f"aioice {aioice.__version__}: Connection no longer sets {name}"
    # IceLink and IceMux rely on how incoming checks and nominations are handled.
    for method in ("request_received", "check_incoming", "data_received", "protocol_lost"):
        assert callable(getattr(Connection, method, None)), f"aioice.Connection.{method} is gone"


def test_aioice_stun_protocol_shape() -> None:
    source = _source(StunProtocol)
    for needle in ("self.transactions", "self.receiver", "def datagram_received",
                   "def send_stun", "def send_data", "def request", "def connection_lost",
                   "self.receiver.request_received(", "self.receiver.data_received("):
        assert needle in source, f"aioice StunProtocol changed: {needle!r} not found"


def test_aiortc_dtls_and_sctp_hooks() -> None:
    dtls = _source(RTCDtlsTransport)
    for needle in ("def _set_role", "self._role", "self._ssl", "_handle_rtp_data",
                   "_handle_rtcp_data", "def _send_rtp"):
        assert needle in dtls, f"aiortc {aiortc.__version__} RTCDtlsTransport: {needle!r} gone"
    sctp = _source(RTCSctpTransport)
    for needle in ("async def _receive_data_chunk", "self._advertised_rwnd"):
        assert needle in sctp, f"aiortc {aiortc.__version__} RTCSctpTransport: {needle!r} gone"


def test_pylibsrtp_binding_roost_calls_directly() -> None:
    binding = pytest.importorskip("pylibsrtp._binding")
    for name in ("srtp_protect", "srtp_unprotect", "srtp_protect_rtcp", "srtp_unprotect_rtcp"):
        assert hasattr(binding.lib, name), f"pylibsrtp._binding.lib.{name} is gone"
    assert hasattr(binding, "ffi")
