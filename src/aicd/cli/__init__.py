"""aicd.cli."""
