"""Resume: the signal WebSocket is cut; the session, its publications and its data survive."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from tests.client.helpers import Recorder, joined, wait_until
from tests.helpers.server import RoostServer

from roost import client as rc

pytestmark = pytest.mark.timeout(60)
ROOM = "client-resume"


async def test_signal_cut_resumes_without_losing_publications_or_data(server: RoostServer
                                                                       ) -> None:
    async with joined(server, "alice", ROOM) as alice, joined(server, "bob", ROOM) as bob:
        alice_events = Recorder(alice, "reconnecting", "reconnected", "disconnected",
                                "connection_state_changed")
        bob_events = Recorder(bob, "data_received", "participant_disconnected",
                              "participant_metadata_changed")
        await wait_until(lambda: "bob" in alice.remote_participants, what="bob")
        source = rc.AudioSource(48_000, 1)
        track = rc.LocalAudioTrack.create_audio_track("mic", source)
        publication = await alice.local_participant.publish_track(
            track, rc.TrackPublishOptions(source=rc.TrackSource.SOURCE_MICROPHONE))
        tone = asyncio.ensure_future(_tone(source))
        assert await _server_published(bob, publication.sid), "bob never saw alice's track"
        sid_before = alice.local_participant.sid

        async def send_numbers() -> None:
            for i in range(60):
                await alice.local_participant.publish_data(str(i).encode(), topic="seq")
                await asyncio.sleep(0.02)

        sender = asyncio.ensure_future(send_numbers())
        await wait_until(lambda: len(bob_events.all("data_received")) >= 10,
                         what="the first numbers at bob")  # the cut comes mid-stream
        await alice.simulate_scenario(rc.SimulateScenarioKind.SIGNAL_RECONNECT)
        await alice_events.wait("reconnecting", timeout=5)
        # a signal request made while the socket is down is sent after the resume
        update = asyncio.ensure_future(alice.local_participant.set_metadata("after the cut"))
        await alice_events.wait("reconnected", timeout=15)
        await asyncio.wait_for(sender, 20)
        await asyncio.wait_for(update, 10)

        await bob_events.wait("data_received", lambda p: p.data == b"59")
        await asyncio.sleep(0.3)  # a wait for nothing: no number may arrive twice
        numbers = [int(p.data) for (p,) in bob_events.all("data_received") if p.topic == "seq"]
        assert numbers == list(range(60)), numbers  # each exactly once, in order
        await bob_events.wait("participant_metadata_changed",
                              lambda p, old, new: new == "after the cut")
        assert bob_events.all("participant_disconnected") == []
        assert alice.local_participant.sid == sid_before
        assert alice.local_participant.track_publications == {publication.sid: publication}
        assert alice.connection_state == rc.ConnectionState.CONN_CONNECTED
        assert [s for (s,) in alice_events.all("connection_state_changed")] == [
            rc.ConnectionState.CONN_RECONNECTING, rc.ConnectionState.CONN_CONNECTED]
        assert alice_events.all("disconnected") == []
        assert publication.sid in bob.remote_participants["alice"].track_publications
        # data still flows both ways after the resume
        got = Recorder(alice, "data_received")
        await bob.local_participant.publish_data(b"welcome back")
        await got.wait("data_received", lambda p: p.data == b"welcome back")
        tone.cancel()


async def _tone(source: rc.AudioSource) -> None:
    """A 440 Hz tone in 10 ms frames (capture_frame paces it)."""
    n, t = 480, 0
    while True:
        x = np.arange(t, t + n) / 48_000
        samples = (np.sin(2 * np.pi * 440 * x) * 0.5 * 32767).astype(np.int16)
        await source.capture_frame(rc.AudioFrame(samples.tobytes(), 48_000, 1, n))
        t += n


async def _server_published(bob: rc.Room, sid: str, timeout: float = 5.0) -> bool:
    """Whether the server announced alice's track to bob (it does on first media)."""
    try:
        await wait_until(lambda: sid in bob.remote_participants["alice"].track_publications,
                         timeout, what="the track at bob")
    except TimeoutError:
        return False
    return True


async def test_signal_cut_resumes_and_data_sent_across_it_arrives_once(server: RoostServer
                                                                       ) -> None:
    async with joined(server, "alice", ROOM) as alice, joined(server, "bob", ROOM) as bob:
        alice_events = Recorder(alice, "reconnecting", "reconnected", "disconnected")
        bob_events = Recorder(bob, "data_received", "participant_disconnected")
        await wait_until(lambda: "bob" in alice.remote_participants, what="bob")
        sid_before = alice.local_participant.sid

        async def send_numbers() -> None:
            for i in range(60):
                await alice.local_participant.publish_data(str(i).encode(), topic="seq")
                await asyncio.sleep(0.02)

        sender = asyncio.ensure_future(send_numbers())
        await wait_until(lambda: len(bob_events.all("data_received")) >= 10,
                         what="the first numbers at bob")  # the cut comes mid-stream
        await alice.simulate_scenario(rc.SimulateScenarioKind.SIGNAL_RECONNECT)
        await alice_events.wait("reconnecting", timeout=5)
        await alice_events.wait("reconnected", timeout=15)
        await asyncio.wait_for(sender, 20)
        await bob_events.wait("data_received", lambda p: p.data == b"59")
        await asyncio.sleep(0.3)  # a wait for nothing: no number may arrive twice
        numbers = [int(p.data) for (p,) in bob_events.all("data_received")]
        assert numbers == list(range(60)), numbers
        assert alice.local_participant.sid == sid_before
        assert bob_events.all("participant_disconnected") == []
        assert alice_events.all("disconnected") == []


async def test_full_reconnect_rejoins_and_republishes(server: RoostServer) -> None:
    async with joined(server, "alice", ROOM) as alice, joined(server, "bob", ROOM) as bob:
        alice_events = Recorder(alice, "reconnecting", "reconnected", "disconnected",
                                "local_track_republished")
        bob_events = Recorder(bob, "participant_connected", "participant_disconnected",
                              "data_received")
        await wait_until(lambda: "bob" in alice.remote_participants, what="bob")
        track = rc.LocalAudioTrack.create_audio_track("mic", rc.AudioSource(48_000, 1))
        publication = await alice.local_participant.publish_track(
            track, rc.TrackPublishOptions(source=rc.TrackSource.SOURCE_MICROPHONE))
        old_sid, old_track_sid = alice.local_participant.sid, publication.sid

        await alice.simulate_scenario(rc.SimulateScenarioKind.FULL_RECONNECT)
        await alice_events.wait("reconnecting", timeout=5)
        await alice_events.wait("reconnected", timeout=20)
        assert alice.local_participant.sid != old_sid
        (republished, previous) = await alice_events.wait("local_track_republished")
        assert republished is publication and previous == old_track_sid
        assert alice.local_participant.track_publications == {publication.sid: publication}
        assert alice_events.all("disconnected") == []
        assert "bob" in alice.remote_participants
        await bob_events.wait("participant_connected",
                              lambda p: p.sid == alice.local_participant.sid, timeout=10)
        await alice.local_participant.publish_data(b"still here")
        (packet,) = await bob_events.wait("data_received")
        assert packet.participant.sid == alice.local_participant.sid
