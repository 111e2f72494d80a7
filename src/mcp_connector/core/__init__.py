"""The shared core: the translation contract, control-plane discovery and access settings. No I/O."""
