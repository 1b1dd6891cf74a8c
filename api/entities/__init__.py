"""The entity registry: every declared entity, by name and by URL path.

Each module in this package (other than `base`) that defines `ENTITY` is an
entity; adding one is a new module here plus a migration for its table. See
README "Add an entity".
"""

import pkgutil
from importlib import import_module

from api.entities.base import Entity, Relation

ENTITIES: dict[str, Entity] = {}
BY_PATH: dict[str, Entity] = {}

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    _module = import_module(f"{__name__}.{_info.name}")
    if hasattr(_module, "ENTITY"):
        ENTITIES[_module.ENTITY.name] = _module.ENTITY
        BY_PATH[_module.ENTITY.path] = _module.ENTITY


DELETE_HOOKS: dict[str, list] = {}


def on_delete(entity_name: str):
    """Register `hook(account_id, ids)` to run when records of `entity_name` are deleted.

    For tables outside the registry that point at an entity (files → tasks).
    """
    def register(hook):
        DELETE_HOOKS.setdefault(entity_name, []).append(hook)
        return hook
    return register


def referencing(target: str) -> list[tuple[Entity, Relation]]:
    """Every (entity, relation) that points at entity `target`."""
    return [(e, r) for e in ENTITIES.values() for r in e.relations if r.target == target]
