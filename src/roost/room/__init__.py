"""The domain: rooms, participants, tracks, permissions; pure logic on asyncio."""
