"""`aicd worker`: job attempts from the broker, run on this host through the server's API.

See docs/workers.md.
"""
