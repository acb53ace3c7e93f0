"""HAProxy as an environment's router (``router: haproxy``), with the same surface as aicd's router.

- :mod:`.router`: ``HAProxyRouter``, dynamic servers and weights through the runtime API
- :mod:`.config`: the binary, its version and the generated configuration
- :mod:`.process`: starting, reloading and stopping haproxy; :mod:`.runtime`: its runtime API socket
- :mod:`.metrics`: per-revision counters from its stats and per-request log lines
"""
