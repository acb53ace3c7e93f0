"""The `aicd` program (`python -m aicd.cli.main`, and the `aicd` script).

A plain `aicd run` command line is run without importing click (`aicd.cli.run_entry`: the
command people time, issue 17); every other one, and every `run` line that needs click's help or
its errors, goes to the click command tree (`aicd.cli.commands`).
"""

from __future__ import annotations

import sys


def main(daemon: bool = True) -> None:
    """The `aicd` program. `aicd run` goes to the run daemon first (`aicd.cli.daemon`) unless
    `daemon` is False: in the daemon's own runs, and for `python -m aicd.cli.main`."""
    if sys.argv[1:2] == ["run"]:
        if daemon:
            from aicd.cli.daemon.client import run_through_daemon

            run_through_daemon(sys.argv)  # returns when the daemon cannot run it: run it here
        from aicd.cli.run_entry import fast_start, plain_run

        fast_start()
        plain_run(sys.argv[2:])  # returns only when click must read the command line
    from aicd.cli.commands import main as click_main

    click_main()


if __name__ == "__main__":
    main(daemon=False)
