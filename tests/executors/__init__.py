"""Tests of aicd.executors; contract.py is the suite every executor must pass."""
