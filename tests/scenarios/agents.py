"""An official-SDK participant meets the agents a livekit-agents worker dispatched to its room."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

from livekit import api, rtc
from tests.helpers.sdk import Rooms, ServerInfo, wait_until
from tests.scenarios.media import heard_pitch

AGENT = rtc.ParticipantKind.PARTICIPANT_KIND_AGENT


def _token(server: ServerInfo, identity: str, room: str,
           agents: list[dict[str, str]] | None) -> str:
    token = api.AccessToken(server.api_key, server.api_secret).with_identity(identity)
    token = token.with_grants(api.VideoGrants(room_join=True, room=room))
    if agents is not None:
        config = api.RoomConfiguration(agents=[api.RoomAgentDispatch(**a) for a in agents])
        token = token.with_room_config(config)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return token.to_jwt()


async def meet_agents(srv: dict[str, str], room_name: str, expect: int = 1,
                      agents: list[dict[str, str]] | None = None,
                      listen: bool = True, linger: float = 0.0) -> dict[str, Any]:
    """Join `room_name` (with a token naming `agents`, if given), wait for `expect` agent
    participants; echo over RPC and hear each one's tone. `linger` s later (a wait for more
    agents that should not come) report how many agents are in the room."""
    rooms = Rooms(srv)
    server = rooms.server
    try:
        room = rooms.new()
        await asyncio.wait_for(room.connect(server.url, _token(server, "caller", room_name,
                                                                agents)), 20)

        def agents_here() -> list[rtc.RemoteParticipant]:
            return [p for p in room.remote_participants.values() if p.kind == AGENT]

        await wait_until(lambda: len(agents_here()) >= expect, 60,
                         f"{expect} agent(s) in {room_name}")
        await wait_until(lambda: all(p.track_publications for p in agents_here()), 30,
                         "the agents' tone tracks")
        out: list[dict[str, Any]] = []
        for p in agents_here():
            seen: dict[str, Any] = {"identity": p.identity, "attributes": dict(p.attributes)}
            seen["echo"] = await room.local_participant.perform_rpc(
                destination_identity=p.identity, method="test.echo", payload="x",
                response_timeout=10)
            if listen:
                await wait_until(lambda p=p: any(pub.track is not None  # type: ignore[misc]
                                                 for pub in p.track_publications.values()),
                                 20, "the tone subscribed")
                track = next(pub.track for pub in p.track_publications.values()
                             if pub.track is not None)
                seen["pitch"] = await heard_pitch(track)
            out.append(seen)
        if linger:
            await asyncio.sleep(linger)  # waits for agents that must NOT come
        return {"agents": out, "count_after": len(agents_here())}
    finally:
        await rooms.close()
