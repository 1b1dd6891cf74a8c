"""Inbound webhook sources: each module here declares one with `api.inbound.inbound` (see README)."""

import pkgutil
from importlib import import_module

from api.inbound import SOURCES, Source


def load() -> dict[str, Source]:
    """Every declared source by name (imports the modules of `api/sources/` once)."""
    for info in pkgutil.iter_modules(__path__):
        import_module(f"{__name__}.{info.name}")
    return SOURCES


def find(name: str) -> Source | None:
    """The declared source called `name`, or None."""
    return load().get(name)
