"""The transport engine: signalling plus publisher/subscriber peer connections (aiortc).

It negotiates both peer connections, owns the data channels (reliable sequencing, replay
after a resume, receive-side de-duplication) and resumes the session when the signal
socket drops. The room above it only sees signal messages, data packets and remote tracks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from aiortc import (
    MediaStreamTrack,
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.sdp import candidate_from_sdp
from livekit.protocol import models, rtc

from .resume import SessionResumer
from .signal import ConnectError, JoinParams, SignalClient
from .types import DisconnectReason, RoomOptions

log = logging.getLogger("roost.client.engine")

RELIABLE = "_reliable"
LOSSY = "_lossy"
NEGOTIATION_TIMEOUT = 15.0
PC_CONNECT_TIMEOUT = 15.0
DATA_READY_TIMEOUT = 15.0
BUFFER_HIGH = 1 << 20  # pause reliable sends above this many queued bytes
REPLAY_MAX_BYTES = 32 << 20


def msids_by_mid(sdp: str) -> dict[str, tuple[str, str]]:
    """`mid → (stream id, track id)` from the `a=msid` lines of an SDP."""
    result: dict[str, tuple[str, str]] = {}
    mid = ""
    for line in sdp.splitlines():
        if line.startswith("m="):
            mid = ""
        elif line.startswith("a=mid:"):
            mid = line[6:].strip()
        elif line.startswith("a=msid:") and mid:
            parts = line[7:].split()
            if len(parts) >= 2:
                result[mid] = (parts[0], parts[1])
    return result


class RtcEngine:
    """Signal socket + two peer connections for one participant session."""

    def __init__(self, options: RoomOptions) -> None:
        self.options = options
        self.signal = SignalClient(self._on_signal, self._on_signal_lost)
        self.url = ""
        self.token = ""
        self.join: rtc.JoinResponse | None = None
        self.publisher: RTCPeerConnection | None = None
        self.subscriber: RTCPeerConnection | None = None
        self.closed = False
        self.reconnecting = False
        # callbacks the room sets
        self.on_join: Callable[[rtc.JoinResponse], None] = lambda join: None
        self.on_message: Callable[[rtc.SignalResponse], None] = lambda msg: None
        self.on_data: Callable[[models.DataPacket, bool], None] = lambda p, r: None
        self.on_track: Callable[[MediaStreamTrack, str, str], None] = lambda t, s, tid: None
        self.on_track_ended: Callable[[str], None] = lambda sid: None
        self.on_reconnecting: Callable[[], None] = lambda: None
        self.on_reconnected: Callable[[], None] = lambda: None
        self.on_disconnected: Callable[[int], None] = lambda reason: None
        self.on_restart: Callable[[int], None] | None = None  # full reconnect (new session)
        self.sync_state_extra: Callable[[rtc.SyncState], None] = lambda state: None
        self._pub_channels: dict[str, RTCDataChannel] = {}
        self._sub_channels: dict[str, RTCDataChannel] = {}
        self._pub_lock = asyncio.Lock()
        self._pub_dirty = False
        self._pub_offer_id = 0
        self._answers: dict[int, asyncio.Future[rtc.SessionDescription]] = {}
        self._sub_lock = asyncio.Lock()
        self._sub_offer_id = 0
        self._pending_candidates: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
        self._mid_tracks: dict[str, str] = {}
        self._sequence = 0
        self._replay: deque[tuple[int, bytes]] = deque()
        self._replay_bytes = 0
        self._last_seq: dict[str, int] = {}
        self._pending_signal: list[rtc.SignalRequest] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._primary_connected = asyncio.Event()
        self._channel_open = asyncio.Event()
        self._low_water: asyncio.Event = asyncio.Event()
        self._resume_task: asyncio.Task[None] | None = None

    # ---- connect / close -------------------------------------------------------------

    async def connect(self, url: str, token: str) -> rtc.JoinResponse:
        """Join: signal, create both peer connections, wait until the primary one connects."""
        self.url, self.token = url, token
        timeout = self.options.connect_timeout or PC_CONNECT_TIMEOUT
        params = JoinParams(
            auto_subscribe=self.options.auto_subscribe,
            adaptive_stream=self.options.adaptive_stream,
            client_protocol=self.options.client_protocol,
        )
        first = await self.signal.connect(url, token, params)
        if first.WhichOneof("message") != "join":
            await self.signal.close()
            raise ConnectError(f"expected a join response, got {first.WhichOneof('message')}")
        self.join = join = first.join
        self.on_join(join)
        config = self._rtc_configuration(join)
        self.subscriber = RTCPeerConnection(config) if join.subscriber_primary else None
        self.publisher = RTCPeerConnection(config)
        self._watch(self.publisher, primary=not join.subscriber_primary)
        if self.subscriber is not None:
            self._watch(self.subscriber, primary=True)
            self.subscriber.on("datachannel", self._on_remote_channel)
        for label, opts in ((RELIABLE, {"ordered": True}),
                            (LOSSY, {"ordered": False, "maxRetransmits": 0})):
            channel = self.publisher.createDataChannel(label, **opts)
            self._attach_channel(channel)
            self._pub_channels[label] = channel
        self.signal.start()
        self._spawn(self.negotiate_publisher())
        try:
            await asyncio.wait_for(self._primary_connected.wait(), timeout)
        except TimeoutError:
            await self.close(send_leave=True)
            raise ConnectError(f"peer connection did not connect within {timeout:.0f} s") from None
        return join

    def _rtc_configuration(self, join: rtc.JoinResponse) -> RTCConfiguration:
        servers = [
            RTCIceServer(urls=list(s.urls), username=s.username or None,
                         credential=s.password or None)
            for s in (self.options.rtc_config.ice_servers if self.options.rtc_config else [])
        ] or [
            RTCIceServer(urls=list(s.urls), username=s.username or None,
                         credential=s.credential or None)
            for s in join.ice_servers
        ]
        return RTCConfiguration(iceServers=servers)  # empty list: no public STUN default

    def _watch(self, pc: RTCPeerConnection, primary: bool) -> None:
        def on_state() -> None:
            state = pc.connectionState
            log.debug("peer connection %s: %s", "primary" if primary else "secondary", state)
            if primary and state == "connected":
                self._primary_connected.set()
            if state == "failed" and not self.closed:
                log.warning("peer connection failed")
                self._spawn(self._restart(DisconnectReason.MEDIA_FAILURE))

        pc.on("connectionstatechange", on_state)

    async def close(self, send_leave: bool = True,
                    reason: int = DisconnectReason.CLIENT_INITIATED) -> None:
        """Leave (optionally telling the server) and tear everything down."""
        if self.closed:
            return
        self.closed = True
        if self._resume_task is not None and self._resume_task is not asyncio.current_task():
            self._resume_task.cancel()
        if send_leave and self.signal.connected:
            req = rtc.SignalRequest()
            req.leave.reason = reason  # type: ignore[assignment]
            req.leave.action = rtc.LeaveRequest.Action.DISCONNECT
            self.signal.leaving = True
            self.signal.send(req)
            await self.signal.flush(1.0)
        await self.signal.close()
        for pc in (self.publisher, self.subscriber):
            if pc is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pc.close(), 5.0)
        current = asyncio.current_task()
        for task in list(self._tasks):
            if task is not current:
                task.cancel()
        for fut in self._answers.values():
            if not fut.done():
                fut.cancel()

    async def _fail(self, reason: int) -> None:
        if self.closed:
            return
        await self.close(send_leave=False)
        self.on_disconnected(reason)

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None and not self.closed:
            log.error("engine task failed", exc_info=task.exception())

    # ---- signalling ------------------------------------------------------------------

    def send_signal(self, req: rtc.SignalRequest) -> None:
        """Send now, or after the resume if the socket is down."""
        if self.reconnecting or not self.signal.send(req):
            if not self.closed:
                self._pending_signal.append(req)

    def _on_signal(self, msg: rtc.SignalResponse) -> None:
        which = msg.WhichOneof("message")
        if which == "answer":
            fut = self._answers.pop(msg.answer.id, None) or self._answers.pop(
                max(self._answers, default=0), None)
            if fut is not None and not fut.done():
                fut.set_result(msg.answer)
        elif which == "offer":
            self._spawn(self._handle_offer(msg.offer))
        elif which == "trickle":
            self._spawn(self._add_candidate(msg.trickle))
        elif which == "refresh_token":
            self.token = msg.refresh_token
        elif which == "leave":
            self._spawn(self._on_leave(msg.leave))
        self.on_message(msg)

    async def _on_leave(self, leave: rtc.LeaveRequest) -> None:
        if leave.action == rtc.LeaveRequest.Action.RESUME:
            self.signal.abort()
            self._on_signal_lost("server asked to resume")
            return
        reason = leave.reason or DisconnectReason.UNKNOWN_REASON
        if leave.action == rtc.LeaveRequest.Action.RECONNECT:
            await self._restart(reason)
            return
        await self._fail(reason)

    async def _restart(self, reason: int) -> None:
        """The session cannot continue: hand over to a full reconnect, or end."""
        if self.on_restart is None:
            await self._fail(reason)
            return
        if self.closed:
            return
        await self.close(send_leave=False)
        self.on_restart(reason)

    async def _add_candidate(self, trickle: rtc.TrickleRequest) -> None:
        try:
            init = json.loads(trickle.candidateInit)
        except ValueError:
            return
        if not init.get("candidate"):
            return
        self._pending_candidates[int(trickle.target)].append(init)
        await self._flush_candidates(int(trickle.target))

    async def _flush_candidates(self, target: int) -> None:
        pc = self.publisher if target == rtc.SignalTarget.PUBLISHER else self.subscriber
        if pc is None or pc.remoteDescription is None:
            return
        pending, self._pending_candidates[target] = self._pending_candidates[target], []
        for init in pending:
            text = init["candidate"]
            try:
                cand = candidate_from_sdp(text.split(":", 1)[1] if text.startswith("candidate:")
                                          else text)
                cand.sdpMid = init.get("sdpMid")
                cand.sdpMLineIndex = init.get("sdpMLineIndex")
                await pc.addIceCandidate(cand)
            except Exception as exc:  # one bad candidate must not end the session
                log.debug("ignored remote candidate %r: %s", text, exc)

    # ---- negotiation -----------------------------------------------------------------

    async def negotiate_publisher(self) -> None:
        """Offer the publisher PC's current state; returns once an answer covers it."""
        self._pub_dirty = True
        async with self._pub_lock:
            pc = self.publisher
            while self._pub_dirty and pc is not None and not self.closed:
                self._pub_dirty = False
                offer = await pc.createOffer()
                await pc.setLocalDescription(offer)
                self._pub_offer_id += 1
                offer_id = self._pub_offer_id
                fut: asyncio.Future[rtc.SessionDescription] = (
                    asyncio.get_running_loop().create_future())
                self._answers[offer_id] = fut
                req = rtc.SignalRequest()
                req.offer.type = "offer"
                req.offer.sdp = pc.localDescription.sdp
                req.offer.id = offer_id
                self.send_signal(req)
                try:
                    answer = await asyncio.wait_for(fut, NEGOTIATION_TIMEOUT)
                except TimeoutError:
                    self._answers.pop(offer_id, None)
                    raise ConnectError("no answer to the publisher offer") from None
                await pc.setRemoteDescription(RTCSessionDescription(answer.sdp, "answer"))
                await self._flush_candidates(rtc.SignalTarget.PUBLISHER)

    async def _handle_offer(self, offer: rtc.SessionDescription) -> None:
        async with self._sub_lock:
            pc = self.subscriber
            if pc is None or self.closed:
                return
            msids = msids_by_mid(offer.sdp)
            await pc.setRemoteDescription(RTCSessionDescription(offer.sdp, "offer"))
            answer = await pc.createAnswer()
            await pc.setLocalDescription(answer)
            self._sub_offer_id = offer.id
            req = rtc.SignalRequest()
            req.answer.type = "answer"
            req.answer.sdp = pc.localDescription.sdp
            req.answer.id = offer.id
            self.send_signal(req)
            await self._flush_candidates(rtc.SignalTarget.SUBSCRIBER)
            self._announce_tracks(pc, msids, dict(offer.mid_to_track_id))

    def _announce_tracks(self, pc: RTCPeerConnection, msids: dict[str, tuple[str, str]],
                         mid_to_track: dict[str, str]) -> None:
        """Report receivers whose track changed with this offer (new, replaced or ended)."""
        for transceiver in pc.getTransceivers():
            mid = transceiver.mid
            if mid is None:
                continue
            receiving = transceiver.direction in ("recvonly", "sendrecv") and (
                transceiver.currentDirection in (None, "recvonly", "sendrecv"))
            stream_id, track_id = msids.get(mid, ("", ""))
            track_sid = mid_to_track.get(mid) or track_id
            old = self._mid_tracks.get(mid)
            if not receiving or not track_sid.startswith("TR"):
                track_sid = ""
            if old and old != track_sid:
                self._mid_tracks.pop(mid, None)
                self.on_track_ended(old)
            track = transceiver.receiver.track
            if track_sid and old != track_sid and track is not None:
                self._mid_tracks[mid] = track_sid
                participant_sid = stream_id.split("|", 1)[0]
                self.on_track(track, participant_sid, track_sid)

    # ---- media ----------------------------------------------------------------------

    def add_track(self, track: MediaStreamTrack, codec: str | None = None) -> RTCRtpSender:
        """Attach a local track to the publisher PC (negotiate afterwards)."""
        assert self.publisher is not None
        transceiver = self.publisher.addTransceiver(track, direction="sendonly")
        if codec is not None:
            caps = RTCRtpSender.getCapabilities(track.kind)
            wanted = [c for c in caps.codecs if c.mimeType.lower() == codec.lower()]
            rtx = [c for c in caps.codecs if c.mimeType.lower().endswith("/rtx")]
            if wanted:
                transceiver.setCodecPreferences(wanted + rtx)
        return transceiver.sender

    async def remove_track(self, sender: RTCRtpSender) -> None:
        """Stop sending a local track; its m-line turns inactive (negotiate afterwards)."""
        assert self.publisher is not None
        for transceiver in self.publisher.getTransceivers():
            if transceiver.sender is sender:
                transceiver.direction = "inactive"
        with contextlib.suppress(Exception):
            await sender.stop()

    # ---- data -----------------------------------------------------------------------

    def _on_remote_channel(self, channel: RTCDataChannel) -> None:
        self._sub_channels[channel.label] = channel
        self._attach_channel(channel)

    def _attach_channel(self, channel: RTCDataChannel) -> None:
        reliable = channel.label == RELIABLE

        def on_message(data: bytes | str) -> None:
            if isinstance(data, str):
                return
            try:
                packet = models.DataPacket.FromString(data)
            except Exception:
                log.debug("undecodable data packet on %s", channel.label)
                return
            if reliable and packet.sequence and packet.participant_sid:
                last = self._last_seq.get(packet.participant_sid, 0)
                if packet.sequence <= last:
                    return  # a replay after the sender resumed
                self._last_seq[packet.participant_sid] = packet.sequence
            self.on_data(packet, reliable)

        channel.on("message", on_message)
        if channel.label == RELIABLE and channel in self._pub_channels.values():
            pass
        channel.on("open", self._channel_open.set)
        channel.on("bufferedamountlow", self._low_water.set)
        channel.bufferedAmountLowThreshold = BUFFER_HIGH // 4

    async def send_data(self, packet: models.DataPacket, reliable: bool) -> None:
        """Send on the publisher's reliable or lossy channel (sequence-stamped if reliable)."""
        channel = self._pub_channels.get(RELIABLE if reliable else LOSSY)
        if channel is None or self.closed:
            raise ConnectionError("not connected")
        if channel.readyState != "open":
            deadline = time.monotonic() + DATA_READY_TIMEOUT
            while channel.readyState != "open":
                if channel.readyState == "closed" or time.monotonic() > deadline:
                    raise ConnectionError("data channel is not open")
                self._channel_open.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._channel_open.wait(), 0.2)
        packet.kind = models.DataPacket.Kind.RELIABLE if reliable else models.DataPacket.Kind.LOSSY
        if reliable:
            while channel.bufferedAmount > BUFFER_HIGH and channel.readyState == "open":
                self._low_water.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._low_water.wait(), 0.5)
            self._sequence += 1
            packet.sequence = self._sequence
            data = packet.SerializeToString()
            self._remember(self._sequence, data)
        else:
            data = packet.SerializeToString()
        channel.send(data)

    def _remember(self, seq: int, data: bytes) -> None:
        self._replay.append((seq, data))
        self._replay_bytes += len(data)
        while self._replay_bytes > REPLAY_MAX_BYTES and self._replay:
            _, old = self._replay.popleft()
            self._replay_bytes -= len(old)

    # ---- resume ---------------------------------------------------------------------

    def _on_signal_lost(self, reason: str) -> None:
        if self.closed or self.reconnecting:
            return
        self.reconnecting = True
        self._resume_task = self._spawn(SessionResumer(self).run(reason))

    def simulate_signal_loss(self) -> None:
        """Drop the signal socket abruptly, as a network failure would."""
        self.signal.abort()
