"""Signalling: one SignalSession per WebSocket, with its codec and request handlers."""
