"""``python -m aicd.deploy.router``: see :mod:`aicd.deploy.router.cli`."""

from aicd.deploy.router.cli import main

raise SystemExit(main())
