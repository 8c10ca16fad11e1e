"""The media plane: peer-connection transports (ICE/DTLS/SCTP), SDP, and the SFU forwarding RTP."""

from roost.media.sdp import SdpError
from roost.media.transport import PeerTransport

__all__ = ["PeerTransport", "SdpError"]
