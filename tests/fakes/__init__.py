"""Real HTTP fake upstreams (one per provider protocol) and a fake command-line agent."""
