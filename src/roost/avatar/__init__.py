"""Avatar service: Simli-style `/compose` API and an audio-driven talking-face participant."""
