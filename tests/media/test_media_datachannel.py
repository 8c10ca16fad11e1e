"""Data-channel plumbing: the SCTP receive-window cap that aiortc lacks."""

from __future__ import annotations

from typing import Any

from aiortc.rtcsctptransport import SCTP_DATA_FIRST_FRAG, DataChunk

from roost.media.datachannel import RECEIVE_WINDOW_SLACK, BoundedSctpTransport


class FakeDtls:
    """Just enough of RTCDtlsTransport for an SCTP transport that never sends for real."""

    state = "connected"
    _role = "client"

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def _send_data(self, data: bytes) -> None:
        self.sent.append(data)

    def _register_data_receiver(self, receiver: Any) -> None:
        pass

    def _unregister_data_receiver(self, receiver: Any) -> None:
        pass


async def test_unassembled_flood_aborts_the_association() -> None:
    """A peer that sends first fragments forever (never the last) is cut off, memory bounded."""
    dtls = FakeDtls()
    sctp = BoundedSctpTransport(dtls, port=5000)  # type: ignore[arg-type]
    sctp._last_received_tsn = 0
    sctp._remote_port = 5000
    sctp._association_state = sctp.State.ESTABLISHED
    payload = b"x" * 1200
    tsn = 0
    while sctp.state != "closed" and tsn < 10_000:
        tsn += 1
        chunk = DataChunk(flags=SCTP_DATA_FIRST_FRAG if tsn == 1 else 0)
        chunk.tsn, chunk.stream_id, chunk.protocol, chunk.user_data = tsn, 1, 53, payload
        await sctp._receive_data_chunk(chunk)
    assert sctp.state == "closed"
    limit = (1024 * 1024 + RECEIVE_WINDOW_SLACK) // len(payload) + 2
    assert tsn <= limit
    assert dtls.sent  # an ABORT went out


async def test_sctp_sends_after_dtls_is_gone_are_dropped_not_raised() -> None:
    """aiortc's retransmission timers fire sends nobody awaits: with DTLS not connected
    (a failed transport in its grace period) they must not raise."""
    from aiortc import RTCCertificate, RTCDtlsTransport, RTCIceGatherer, RTCIceTransport
    from aiortc.rtcsctptransport import AbortChunk

    from roost.media.datachannel import BoundedSctpTransport

    dtls = RTCDtlsTransport(RTCIceTransport(RTCIceGatherer()),
                            [RTCCertificate.generateCertificate()])
    sctp = BoundedSctpTransport(dtls)
    sctp._remote_port, sctp._remote_verification_tag = 5000, 1
    await sctp._send_chunk(AbortChunk())  # DTLS never connected
    assert sctp.sends_after_close == 1
