"""The core API: what the CLI and the server both call.

Submodules are imported where used (`aicd.core.local_run`,
`aicd.core.variables_input`) so that each command loads only what it needs.
"""
