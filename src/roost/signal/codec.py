"""Binary protobuf / protojson encoding of SignalRequest and SignalResponse frames."""

from __future__ import annotations

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from livekit.protocol import rtc


class FrameError(ValueError):
    """A frame from the client could not be decoded."""


def decode_request(data: bytes | str) -> rtc.SignalRequest:
    """Decode one WebSocket message into a SignalRequest (bytes = protobuf, str = JSON)."""
    request = rtc.SignalRequest()
    try:
        if isinstance(data, str):
            json_format.Parse(data, request, ignore_unknown_fields=True)
        else:
            request.ParseFromString(data)
    except (DecodeError, json_format.ParseError, ValueError, TypeError) as exc:
        kind = "JSON" if isinstance(data, str) else "protobuf"
        raise FrameError(f"malformed {kind} SignalRequest: {exc}") from exc
    except RecursionError as exc:
        raise FrameError("SignalRequest nested too deeply") from exc
    return request


def encode_response(response: rtc.SignalResponse, as_json: bool) -> bytes | str:
    if as_json:
        return json_format.MessageToJson(response, indent=None)
    return response.SerializeToString()
