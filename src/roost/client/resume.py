"""Resuming a session after the signal socket dropped (`reconnect=1&sid=…`).

After the server's ReconnectResponse: SyncState, replay of the reliable packets after
`last_message_seq`, then the signal requests queued while away.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from livekit.protocol import models, rtc

from .signal import ConnectError, JoinParams
from .types import DisconnectReason

if TYPE_CHECKING:
    from .engine import RtcEngine

log = logging.getLogger("roost.client.resume")

RESUME_BACKOFF = (0.0, 0.3, 0.6, 1.0, 2.0, 3.0, 5.0)
RELIABLE = "_reliable"


class SessionResumer:
    """One resume attempt sequence for an engine."""

    def __init__(self, engine: RtcEngine) -> None:
        self.engine = engine

    async def run(self, reason: str) -> None:
        """Reconnect the socket with `reconnect=1`; on refusal hand over to a full reconnect."""
        e = self.engine
        e.on_reconnecting()
        join = e.join
        assert join is not None
        attempts = max(1, e.options.max_reconnect_attempts)
        restart = False
        for attempt in range(attempts):
            await asyncio.sleep(RESUME_BACKOFF[min(attempt, len(RESUME_BACKOFF) - 1)])
            if e.closed:
                return
            params = JoinParams(
                auto_subscribe=e.options.auto_subscribe,
                adaptive_stream=e.options.adaptive_stream,
                reconnect=True, sid=join.participant.sid,
                reconnect_reason=models.ReconnectReason.RR_SIGNAL_DISCONNECTED,
                client_protocol=e.options.client_protocol,
            )
            try:
                first = await e.signal.connect(e.url, e.token, params)
            except ConnectError as exc:
                log.info("resume attempt %d failed: %s", attempt + 1, exc)
                if exc.status in (401, 403):
                    break
                if "leave" in exc.message:
                    restart = True
                    break
                continue
            if first.WhichOneof("message") != "reconnect":
                log.info("resume answered with %s", first.WhichOneof("message"))
                await e.signal.close()
                restart = True
                break
            e.signal.start()
            self._send_sync_state()
            self._replay_after(first.reconnect.last_message_seq)
            e.reconnecting = False
            pending, e._pending_signal = e._pending_signal, []
            for req in pending:
                e.send_signal(req)
            e.on_reconnected()
            return
        e.reconnecting = False
        if restart:
            await e._restart(DisconnectReason.STATE_MISMATCH)
        else:
            await e._fail(DisconnectReason.SIGNAL_CLOSE)

    def _replay_after(self, last_seq: int) -> None:
        """Re-send the reliable packets the server had not received."""
        e = self.engine
        while e._replay and e._replay[0][0] <= last_seq:
            _, data = e._replay.popleft()
            e._replay_bytes -= len(data)
        channel = e._pub_channels.get(RELIABLE)
        if channel is None or channel.readyState != "open":
            return
        for _, data in e._replay:
            channel.send(data)

    def _send_sync_state(self) -> None:
        """Tell the server what this client has: descriptions, channels, tracks."""
        e = self.engine
        req = rtc.SignalRequest()
        state = req.sync_state
        if e.subscriber is not None and e.subscriber.localDescription is not None:
            state.answer.type = "answer"
            state.answer.sdp = e.subscriber.localDescription.sdp
            state.answer.id = e._sub_offer_id
        if e.publisher is not None and e.publisher.localDescription is not None:
            state.offer.type = "offer"
            state.offer.sdp = e.publisher.localDescription.sdp
            state.offer.id = e._pub_offer_id
        for target, channels in ((rtc.SignalTarget.PUBLISHER, e._pub_channels),
                                 (rtc.SignalTarget.SUBSCRIBER, e._sub_channels)):
            for label, channel in channels.items():
                info = state.data_channels.add()
                info.label = label
                info.id = channel.id or 0
                info.target = target
        for psid, seq in e._last_seq.items():
            recv = state.datachannel_receive_states.add()
            recv.publisher_sid = psid
            recv.last_seq = seq
        e.sync_state_extra(state)
        e.signal.send(req)

