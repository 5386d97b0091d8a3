"""Search spaces: operators, backbones, slots, architectures."""
