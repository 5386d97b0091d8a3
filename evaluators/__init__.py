"""How a candidate is scored: cost, latency, data, proxy training, zero-cost scores."""
