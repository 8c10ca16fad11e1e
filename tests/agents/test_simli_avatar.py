"""`livekit-plugins-simli` 1.8.9, unchanged, driving roost's own avatar end to end: a real
worker (tests/agents/simli_app.py, no models) points `AvatarSession(api_url=...)` at roost, the
avatar joins the agent's room, and a listener (official SDK) hears the tone the agent says
from the avatar's audio track and sees the avatar's mouth move; `say()` returns once roost
reports `lk.playback_finished`, an interruption reaches roost as `lk.clear_buffer`, and the
avatar leaves when the job ends or the agent closes the AvatarSession."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from livekit.protocol import models
from tests.agents.conftest import Spawn
from tests.helpers.agents import agents_available
from tests.helpers.scenario import run_scenario
from tests.helpers.server import REPO_ROOT, RoostServer

pytestmark = [pytest.mark.skipif(bool(agents_available()), reason=agents_available()),
              pytest.mark.timeout(240)]

SIMLI_APP = REPO_ROOT / "tests" / "agents" / "simli_app.py"
SCENARIO = "tests.scenarios.simli_avatar:simli_avatar"
AVATAR = "simli-avatar-agent"
AGENT_KIND = int(models.ParticipantInfo.Kind.AGENT)
# what the agents framework logs when the avatar did not answer lk.clear_buffer with an
# lk.playback_finished in time (it then finishes the segment itself after 2 s)
NO_FINISH = "didn't receive playback finished event after clear buffer"


async def listen(server: RoostServer, room: str, mode: str,
                 realtime: bool = False) -> dict[str, Any]:
    result = await asyncio.to_thread(run_scenario, SCENARIO, server.info, room, mode,
                                     realtime, timeout=150)
    return dict(result)


def assert_avatar_joined(seen: dict[str, Any]) -> str:
    """The avatar came through the plugin, as the agent's: returns the agent's identity."""
    agent = seen["agent"]
    assert agent["attributes"].get("simli.avatar") == "joined", agent
    avatar = seen["avatar"]
    assert avatar["kind"] == AGENT_KIND, avatar
    assert avatar["attributes"].get("lk.publish_on_behalf") == agent["identity"], avatar
    assert [(kind, source) for kind, source, _ in avatar["tracks"]] == [
        ("KIND_AUDIO", "SOURCE_MICROPHONE"), ("KIND_VIDEO", "SOURCE_CAMERA")], avatar["tracks"]
    assert tuple(seen["size"]) == (512, 512)
    return str(agent["identity"])


async def test_the_simli_plugin_speaks_through_roosts_avatar(server: RoostServer,
                                                             spawn: Spawn) -> None:
    worker = spawn(server, "S", app=SIMLI_APP)
    seen = await listen(server, "simli-speak", "speak")
    agent = assert_avatar_joined(seen)
    # idle: the mouth is shut; no tone
    assert seen["idle"]["frames"] >= 5, seen["idle"]
    assert seen["idle"]["mouth_max"] < 0.02, seen["idle"]
    assert seen["idle"]["heard_s"] == 0, seen["idle"]
    # the 2 s tone came out of the avatar's own audio track, at its pitch
    speaking = seen["speaking"]
    assert abs(speaking["pitch"] - 440) < 10, speaking
    assert 1.5 <= speaking["heard_s"] <= 2.5, speaking
    # and the mouth moved with it: open (dark cavity) and changing from frame to frame
    assert speaking["mouth_max"] > 0.04, speaking
    assert speaking["mouth_changes"] >= 5, speaking
    # say() returned because roost reported the whole segment played
    say = seen["say"]
    assert say["interrupted"] is False, say
    assert say["playback_interrupted"] is False, say
    assert say["playback_position"] == pytest.approx(2.0, abs=0.2), say
    assert 1.8 <= say["elapsed"] < 10, say
    assert seen["said_attribute"] == "1"
    # the job shuts down: the agent leaves the room, and roost's avatar, seeing it go, leaves
    # by itself at once (livekit-agents 1.8.9 runs the plugin's aclose, whose RemoveParticipant
    # would take it out, only after it left the room, when aclose skips it)
    assert seen["end_answer"] == "ok"
    left = seen["left"]
    assert set(left) == {AVATAR, agent}, left
    assert left[AVATAR]["reason"] == models.DisconnectReason.CLIENT_INITIATED, left
    assert 0 <= left[AVATAR]["at"] - left[agent]["at"] < 2.0, left
    assert seen["still_here"] == []
    worker.wait_for_log("process exiting", 10)


@pytest.mark.parametrize("realtime", [False, True], ids=["streamed-ahead", "streaming"])
async def test_interrupting_a_say_clears_roosts_avatar(server: RoostServer, spawn: Spawn,
                                                       realtime: bool) -> None:
    """The long tone is either all sent before the interruption (as a fast TTS sends it) or
    still being sent at real time when it comes (the stream roost is reading is cut)."""
    worker = spawn(server, "S", app=SIMLI_APP)
    seen = await listen(server, "simli-interrupt", "interrupt", realtime)
    assert_avatar_joined(seen)
    assert seen["interrupt_answer"] == "ok"
    long = seen["long"]
    # the handle completed, interrupted, on roost's own playback_finished: soon after the
    # interruption (the framework's fallback waits 2 s) and at the position actually played
    assert long["interrupted"] is True, long
    assert long["playback_interrupted"] is True, long
    assert long["done_after_interrupt_s"] < 1.5, long
    played = long["playback_position"]  # a second was heard before the interruption
    assert 0.8 <= played <= long["interrupt_after_s"] + 0.5, long
    assert NO_FINISH not in worker.log()
    # the rest of the 8 s tone was dropped: little more was heard than until the interruption
    heard = seen["long_heard"]
    assert abs(heard["pitch"] - 440) < 10, heard
    assert heard["heard_s"] <= long["interrupt_after_s"] + 0.8, (heard, long)
    # and the next say plays at once, to the end
    short = seen["short"]
    assert short["interrupted"] is False and short["playback_interrupted"] is False, short
    assert short["playback_position"] == pytest.approx(1.0, abs=0.2), short
    assert short["took_s"] < 3.0, short
    assert 0.7 <= seen["short_heard"]["heard_s"] <= 1.5, seen["short_heard"]
    assert seen["said_attribute"] == "2"
    # the agent closes its AvatarSession: the plugin has RoomService remove the avatar, and
    # roost's avatar session ends with it; the agent stays
    assert seen["end_answer"] == "ok"
    assert seen["left"][AVATAR]["reason"] == models.DisconnectReason.PARTICIPANT_REMOVED, seen
    assert seen["still_here"] == [seen["agent"]["identity"]], seen
    assert "failed to remove avatar participant" not in worker.log()


async def test_a_face_roost_does_not_have_leaves_the_agent_without_avatar(
        server: RoostServer, spawn: Spawn) -> None:
    """Simli's own face ids are not roost's: the plugin logs roost's 400 and its reason, sends
    no avatar, and `wait_for_join` runs out (shortened here to 3 s)."""
    worker = spawn(server, "S", app=SIMLI_APP, SIMLI_FACE="d2a5c7c6-fed9-4f55-bcb3-062f7cd2010",
                   SIMLI_JOIN_TIMEOUT="3")
    seen = await listen(server, "simli-no-face", "speak")
    assert seen["agent"]["attributes"]["simli.avatar"].startswith("failed: TimeoutError"), seen
    assert seen["present"] == [seen["agent"]["identity"]], seen
    log = worker.log()
    assert "failed to create simli session token" in log
    assert "unknown faceId" in log and "this server has: ada, ben, cleo" in log
