"""Real components for the integration tests: recording upstreams, gateway processes, clients."""
