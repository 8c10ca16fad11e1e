"""Server APIs: Twirp RoomService and its CLI client, webhooks, calls forwarded between nodes."""
