"""Task loaders; each registers itself in sparsetune.registry.TASK_LOADERS."""
