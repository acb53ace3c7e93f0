"""aicd: continuous delivery for AI services."""

from aicd import dataclass_cache as _dataclass_cache

__version__ = "0.1.0"

# before any of aicd's dataclasses is made: their methods' compiled code is kept between processes
_dataclass_cache.install()
