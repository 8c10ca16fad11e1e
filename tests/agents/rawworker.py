"""A hand-driven agent worker: the `/agent` protocol spoken frame by frame, for edge cases."""

from __future__ import annotations

import asyncio
import warnings

import aiohttp
from livekit import api
from livekit.protocol import agent
from tests.helpers.server import RoostServer


def worker_token(server: RoostServer, agent_grant: bool = True) -> str:
    token = api.AccessToken(server.api_key, server.api_secret)
    token = token.with_grants(api.VideoGrants(agent=agent_grant))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return token.to_jwt()


class RawWorker:
    """One `/agent` WebSocket; send/receive protobuf messages with timeouts."""

    def __init__(self, session: aiohttp.ClientSession,
                 ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.worker_id = ""

    @classmethod
    async def connect(cls, server: RoostServer, token: str | None = None) -> RawWorker:
        session = aiohttp.ClientSession()
        try:
            ws = await session.ws_connect(
                f"{server.url}/agent",
                headers={"Authorization": f"Bearer {token or worker_token(server)}"})
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def send(self, message: agent.WorkerMessage) -> None:
        await self.ws.send_bytes(message.SerializeToString())

    async def receive(self, timeout: float = 10.0) -> agent.ServerMessage | None:
        """The next ServerMessage, or None when the server closed the socket."""
        while True:
            msg = await asyncio.wait_for(self.ws.receive(), timeout)
            if msg.type == aiohttp.WSMsgType.BINARY:
                return agent.ServerMessage.FromString(msg.data)
            if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED,
                            aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.ERROR):
                return None

    async def expect(self, which: str, timeout: float = 10.0) -> agent.ServerMessage:
        """Skip pongs; the next message must be `which`."""
        while True:
            message = await self.receive(timeout)
            assert message is not None, f"socket closed while waiting for {which}"
            kind = message.WhichOneof("message")
            if kind == "pong" and which != "pong":
                continue
            assert kind == which, f"expected {which}, got {kind}: {message}"
            return message

    async def register(self, agent_name: str = "", job_type: int = agent.JT_ROOM) -> str:
        msg = agent.WorkerMessage()
        msg.register.type = job_type  # type: ignore[assignment]
        msg.register.agent_name = agent_name
        msg.register.version = "raw-test"
        await self.send(msg)
        reply = await self.expect("register")
        self.worker_id = reply.register.worker_id
        return self.worker_id

    async def answer(self, job: agent.Job, available: bool, *, identity: str = "",
                     terminate: bool = False) -> None:
        msg = agent.WorkerMessage()
        msg.availability.job_id = job.id
        msg.availability.available = available
        msg.availability.terminate = terminate
        msg.availability.participant_identity = identity
        await self.send(msg)

    async def status(self, load: float, full: bool = False) -> None:
        msg = agent.WorkerMessage()
        msg.update_worker.load = load
        msg.update_worker.status = agent.WS_FULL if full else agent.WS_AVAILABLE
        await self.send(msg)

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()
