"""Server APIs: the Twirp RoomService, and (later) webhooks."""
