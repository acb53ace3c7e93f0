"""aicd.engine."""
