"""Search spaces: operators, backbones, slots, architectures.

The bottom layer: imports only torch and torchvision, never ``evaluators`` or ``nas``.
"""
