"""roost: a realtime audio, video and data server that speaks the LiveKit protocol."""

__version__ = "0.1.0"

# The version reported to clients in ServerInfo. LiveKit SDKs parse it as semver and
# gate features on it (RPC needs >= 1.8.0), so it tracks the reference protocol level.
PROTOCOL_SERVER_VERSION = "1.9.0"
SERVER_PROTOCOL = 16
