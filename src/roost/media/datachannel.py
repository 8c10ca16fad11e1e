"""The data channels of one SCTP association, by label, with bounded send buffering."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

from aiortc import RTCDataChannel, RTCSctpTransport
from aiortc.rtcdatachannel import RTCDataChannelParameters
from aiortc.rtcsctptransport import Chunk, DataChunk

from roost.limits import KIB, Limits

log = logging.getLogger(__name__)

RELIABLE = "_reliable"
LOSSY = "_lossy"
DATA_TRACK = "_data_track"

_limits = Limits()
MAX_RECEIVE_SIZE = _limits.data_packet_size
# Bytes that may wait per channel: before it opens, and inside SCTP once it is open.
RELIABLE_BUFFER = _limits.data_send_queue_bytes
UNRELIABLE_BUFFER = 256 * KIB
# Unassembled inbound bytes allowed beyond the advertised window (1 MiB) before the
# association is aborted: aiortc itself never enforces its receive window.
RECEIVE_WINDOW_SLACK = MAX_RECEIVE_SIZE


class BoundedSctpTransport(RTCSctpTransport):
    """aiortc's SCTP transport with a hard cap on data the peer may leave unassembled."""

    on_overrun: Callable[[], None] | None = None

    async def _receive_data_chunk(self, chunk: DataChunk) -> None:
        if self._advertised_rwnd - len(chunk.user_data) < -RECEIVE_WINDOW_SLACK:
            log.warning("SCTP peer overran the receive window; aborting the association")
            await self.stop()
            if self.on_overrun is not None:
                self.on_overrun()
            return
        await super()._receive_data_chunk(chunk)

    async def _send_chunk(self, chunk: Chunk) -> None:
        # aiortc's T1/T2 retransmission timers send with asyncio.ensure_future and never
        # await the result: once DTLS is gone (a failed transport waits out its grace
        # period before the participant is removed) each would log "Task exception was
        # never retrieved". Nothing can be sent then; the association ends with the
        # transport.
        try:
            await super()._send_chunk(chunk)
        except ConnectionError:
            self.sends_after_close += 1

    sends_after_close = 0  # chunks dropped because DTLS was no longer connected


class DataChannels:
    """Channel registry: delivers every message as (label, bytes) and sends by label."""

    def __init__(self, deliver: Callable[[str, bytes], None], log_prefix: str = "") -> None:
        self._deliver = deliver
        self._by_label: dict[str, RTCDataChannel] = {}
        self._waiting: dict[str, deque[bytes]] = {}
        self._waiting_bytes: dict[str, int] = {}
        self._log_prefix = log_prefix
        self._closed = False
        self._expected: set[str] = set()  # labels the peer will open: queue sends meanwhile

    def labels(self) -> list[str]:
        return list(self._by_label)

    def expect(self, *labels: str) -> None:
        """Queue sends for labels the peer is about to open in-band (its DCEP OPEN)."""
        self._expected.update(labels)

    def get(self, label: str) -> RTCDataChannel | None:
        return self._by_label.get(label)

    def create(
        self, sctp: RTCSctpTransport, label: str, *, ordered: bool, max_retransmits: int | None
    ) -> RTCDataChannel:
        """Create a channel announced in-band (DCEP), like a browser's createDataChannel."""
        params = RTCDataChannelParameters(
            label=label, ordered=ordered, maxRetransmits=max_retransmits
        )
        channel = RTCDataChannel(sctp, params)
        self.adopt(channel)
        return channel

    def adopt(self, channel: RTCDataChannel) -> None:
        """Track a channel (created here or opened by the peer) and wire its events."""
        label = channel.label
        previous = self._by_label.get(label)
        if previous is not None and previous is not channel:
            log.debug("%sdata channel %r opened again; newest wins", self._log_prefix, label)
        self._by_label[label] = channel

        @channel.on("message")
        def on_message(message: bytes | str) -> None:
            data = message.encode() if isinstance(message, str) else message
            if len(data) > MAX_RECEIVE_SIZE:
                log.warning("%sdropping %d-byte message on %r", self._log_prefix, len(data), label)
                return
            try:
                self._deliver(label, data)
            except Exception:
                log.exception("%son_data handler failed", self._log_prefix)

        @channel.on("open")
        def on_open() -> None:
            self._flush(label)

        @channel.on("close")
        def on_close() -> None:
            if self._by_label.get(label) is channel:
                del self._by_label[label]
                self._drop_waiting(label)

        if channel.readyState == "open":
            self._flush(label)

    def send(self, label: str, payload: bytes) -> bool:
        """Send now, or queue (bounded) until the channel opens; False if undeliverable."""
        channel = self._by_label.get(label)
        if self._closed or (channel is None and label not in self._expected):
            return False
        if channel is None:
            reliable = label == RELIABLE
        else:
            reliable = channel.ordered and channel.maxRetransmits is None
        cap = RELIABLE_BUFFER if reliable else UNRELIABLE_BUFFER
        state = "connecting" if channel is None else channel.readyState
        if state == "connecting":
            used = self._waiting_bytes.get(label, 0)
            if used + len(payload) > cap:
                return False
            self._waiting.setdefault(label, deque()).append(payload)
            self._waiting_bytes[label] = used + len(payload)
            return True
        if state != "open" or channel is None:
            return False
        if channel.bufferedAmount + len(payload) > cap:
            return False
        return self._send_now(channel, payload)

    def _send_now(self, channel: RTCDataChannel, payload: bytes) -> bool:
        try:
            channel.send(payload)
        except (ValueError, ConnectionError) as exc:  # e.g. larger than max-message-size
            log.debug("%scannot send on %r: %s", self._log_prefix, channel.label, exc)
            return False
        except Exception:  # aiortc's InvalidStateError: the channel closed meanwhile
            return False
        return True

    def _flush(self, label: str) -> None:
        channel = self._by_label.get(label)
        waiting = self._waiting.pop(label, None)
        self._waiting_bytes.pop(label, None)
        if channel is None or not waiting:
            return
        for payload in waiting:
            if not self._send_now(channel, payload):
                log.debug("%sdropped a buffered message on %r", self._log_prefix, label)

    def _drop_waiting(self, label: str) -> None:
        self._waiting.pop(label, None)
        self._waiting_bytes.pop(label, None)

    def close(self) -> None:
        """Forget every channel and buffered message (the association is going away)."""
        self._closed = True
        self._by_label.clear()
        self._waiting.clear()
        self._waiting_bytes.clear()
