"""Tests of roost.client: against roost alone, and interop with the official `livekit` SDK."""
