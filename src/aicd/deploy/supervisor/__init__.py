"""The supervisor: runs a revision's instances on the local target.

- :mod:`.supervisor`: ``Supervisor``, revisions as groups of instances, adoption after a restart
- :mod:`.instance`: one instance: readiness, liveness, restarts with backoff, crash loops
- :mod:`.model`: states, events and the restart policy; :mod:`.proc`: processes (pidfd, groups)
- :mod:`.state`: the state file that lets a new agent find the instances again
"""
