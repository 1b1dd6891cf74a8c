"""GraphQL names derived from the entity registry (`task` → `Task`, `tasks`, `createTask`)."""

import re

from api.entities.base import Entity, Relation


def pascal(text: str) -> str:
    """`api_key` or `api-keys` → `ApiKey` / `ApiKeys`."""
    return "".join(part[:1].upper() + part[1:] for part in re.split(r"[_\-\s]+", text) if part)


def camel(text: str) -> str:
    """`api-keys` → `apiKeys`."""
    name = pascal(text)
    return name[:1].lower() + name[1:]


def type_name(entity: Entity) -> str:
    """The object type of an entity: `Task`."""
    return pascal(entity.name)


def single_field(entity: Entity) -> str:
    """The query field for one record: `task`."""
    return camel(entity.name)


def list_field(entity: Entity) -> str:
    """The query field for a page of records: `tasks`."""
    return camel(entity.path)


def reverse_name(source: Entity, relation: Relation) -> str:
    """The field on the relation's target listing the `source` records that point at it.

    The relation's `reverse` when declared (`User.assignedTasks`); else the source's
    plural when the relation is named after its target (`comment.task` → `Task.comments`),
    else the plural and the relation's name (`comment.author` → `User.commentsByAuthor`).
    """
    if relation.reverse:
        return relation.reverse
    if relation.name == relation.target:
        return list_field(source)
    return f"{list_field(source)}By{pascal(relation.name)}"


def check_unique(entity: Entity, names: list[str]) -> None:
    """Fail at start-up when two fields of an entity's type would share a name."""
    seen = set()
    for name in names:
        if name in seen:
            raise ValueError(f"GraphQL type {type_name(entity)} has two fields named {name!r}: "
                             "give one of the relations a distinct `reverse` name.")
        seen.add(name)
