"""aicd.pipeline."""
