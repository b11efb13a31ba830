"""One file per method; each registers itself in sparsetune.registry.METHODS."""
