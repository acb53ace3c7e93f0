"""Deployments: the local target's pieces, driven from Python by an environment agent.

- ``router``: the weighted HTTP/1.1 reverse proxy that is an environment's stable address;
  it splits traffic between revisions by weight and records per-revision metrics.
- ``supervisor``: runs each revision's processes, restarts crashed ones, keeps their logs.
- ``health``: readiness checks of a revision's instances.
"""
