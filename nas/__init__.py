"""ConvNAS command-line entry points and orchestration."""
