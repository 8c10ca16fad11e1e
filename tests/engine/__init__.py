"""Packet-engine tests: RTP/RTCP wire types, SRTP, forwarding, NACK, audio levels."""
