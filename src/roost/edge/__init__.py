"""The HTTP and WebSocket edge: decodes, authenticates and limits, then hands over."""
