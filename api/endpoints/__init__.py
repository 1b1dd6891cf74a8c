"""Custom endpoints: each module here declares routes with `api.custom.endpoint` (see README)."""

import pkgutil
from importlib import import_module

from flask_smorest import Blueprint

from api import custom


def blueprint() -> Blueprint:
    """The blueprint carrying every endpoint declared in `api/endpoints/` (imports them all)."""
    for info in pkgutil.iter_modules(__path__):
        import_module(f"{__name__}.{info.name}")
    return custom.blp
