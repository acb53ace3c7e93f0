"""The run daemon: a resident process that keeps `aicd run`'s modules loaded.

Starting Python and importing what a run needs (asyncio, the pipeline reader, the engine, the
store) is most of a small pipeline's wall time. The `aicd` program hands a `run` command line to
a per-user daemon that has imported all of it once and forks a fresh process per run: the
command line, working folder, environment, umask and standard streams are the client's own, its
signals are forwarded, and its exit status is the run's. :mod:`aicd.cli.daemon.client` is the
side in the `aicd` process (it imports almost nothing), :mod:`aicd.cli.daemon.server` the
daemon, :mod:`aicd.cli.daemon.command` the `aicd daemon status|stop` commands. See
docs/usage.md ("The run daemon") for what a user sees and how to turn it off.
"""
