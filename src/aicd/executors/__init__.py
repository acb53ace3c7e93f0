"""aicd.executors."""
