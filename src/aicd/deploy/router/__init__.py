"""aicd's router: the weighted HTTP/1.1 reverse proxy in front of an environment's revisions.

- :mod:`.router`: ``Router``, the API the agent drives (start, tables, drain, metrics)
- :mod:`.table`: atomic backend tables and the weighted choice
- :mod:`.proxy`: client connections and exchanges; :mod:`.backend`: backend connections and pools
- :mod:`.http`: head limits and the bytes the router writes itself; :mod:`.metrics`: per-revision counters
- :mod:`.factory`: aicd's router or HAProxy (:mod:`aicd.deploy.haproxy`), per ``environments.<env>.router``
- :mod:`.cli`: ``python -m aicd.deploy.router``, the router by hand

See docs/router.md.
"""
