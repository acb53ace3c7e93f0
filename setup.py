"""The one compiled part of aicd: the deploy router's native data plane (Linux only, optional).

Everything else is in pyproject.toml. The extension is optional: where it cannot be built (no C
compiler, no Python headers, not Linux) the install goes on and the router uses its Python path.
"""

import sys

from setuptools import Extension, setup

ext_modules = []
if sys.platform.startswith("linux"):
    ext_modules.append(
        Extension(
            "aicd.deploy.router._native",
            ["src/aicd/deploy/router/_native.c"],
            extra_compile_args=["-O2", "-std=gnu11", "-Wall", "-Wno-unused-parameter"],
            optional=True,
        )
    )

setup(ext_modules=ext_modules)
