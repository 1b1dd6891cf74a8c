"""Depth and cost of a query, measured before anything runs.

- Depth: field nesting (`{ tasks { edges { node { id } } } }` is 4).
- Cost: every field counts 1, times the `limit` of each list field above it (its
  argument, a variable's value, or the schema default; at most `MAX_LIMIT`).
  `tasks(limit: 100) { edges { node { id assignee { name } } } }` is
  1 + 100 × (1 + 1 + 1 + 1 + 1) = 501.

Introspection fields (`__schema`, `__type`, `__typename`) are not counted:
graphql-core's `MaxIntrospectionDepthRule` bounds them, and
`GRAPHQL_INTROSPECTION=false` turns them off. Fragments are measured once each,
so repeated spreads cannot make the measuring itself expensive; a spread cycle is
left to the standard validation to report.
"""

from dataclasses import dataclass

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    IntValueNode,
    OperationDefinitionNode,
    VariableNode,
    get_named_type,
)

from api.query import MAX_LIMIT


@dataclass(frozen=True)
class Size:
    """How deep a selection nests and what it costs."""

    depth: int = 0
    cost: int = 0


class _Measure:
    def __init__(self, document: DocumentNode, schema: GraphQLSchema, variables: dict):
        self.schema = schema
        self.variables = variables
        self.fragments = {d.name.value: d for d in document.definitions
                          if isinstance(d, FragmentDefinitionNode)}
        self.measured: dict[str, Size] = {}
        self.measuring: set[str] = set()

    def selections(self, selection_set, parent_type) -> Size:
        depth = cost = 0
        for selection in selection_set.selections if selection_set else ():
            if isinstance(selection, FieldNode):
                size = self.field(selection, parent_type)
            elif isinstance(selection, FragmentSpreadNode):
                size = self.fragment(selection.name.value)
            else:
                size = self.selections(selection.selection_set,
                                       self.type_named(selection.type_condition, parent_type))
            depth, cost = max(depth, size.depth), cost + size.cost
        return Size(depth, cost)

    def field(self, node: FieldNode, parent_type) -> Size:
        name = node.name.value
        if name.startswith("__"):
            return Size()
        definition = getattr(parent_type, "fields", {}).get(name)
        child_type = get_named_type(definition.type) if definition else None
        inner = self.selections(node.selection_set, child_type)
        return Size(inner.depth + 1, 1 + self.multiplier(node, definition) * inner.cost)

    def fragment(self, name: str) -> Size:
        if name in self.measuring or name not in self.fragments:
            return Size()
        if name not in self.measured:
            self.measuring.add(name)
            fragment = self.fragments[name]
            self.measured[name] = self.selections(fragment.selection_set,
                                                  self.type_named(fragment.type_condition, None))
            self.measuring.discard(name)
        return self.measured[name]

    def type_named(self, condition, default):
        return self.schema.get_type(condition.name.value) if condition else default

    def multiplier(self, node: FieldNode, definition) -> int:
        if definition is None or "limit" not in definition.args:
            return 1
        given = next((a.value for a in node.arguments or () if a.name.value == "limit"), None)
        if given is None:
            value = definition.args["limit"].default_value
        elif isinstance(given, IntValueNode):
            value = int(given.value)
        elif isinstance(given, VariableNode):
            value = self.variables.get(given.name.value, MAX_LIMIT)
        else:
            value = MAX_LIMIT
        return max(1, min(value, MAX_LIMIT)) if isinstance(value, int) else MAX_LIMIT


def measure(document: DocumentNode, schema: GraphQLSchema, variables: dict | None) -> Size:
    """The largest depth and cost among the document's operations."""
    measuring = _Measure(document, schema, variables or {})
    sizes = [measuring.selections(d.selection_set, schema.get_root_type(d.operation))
             for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    return Size(max((s.depth for s in sizes), default=0), max((s.cost for s in sizes), default=0))


def check(document: DocumentNode, schema: GraphQLSchema, variables: dict | None,
          max_depth: int, max_cost: int) -> list[GraphQLError]:
    """Errors for a query deeper or costlier than allowed (none when within the limits)."""
    try:
        size = measure(document, schema, variables)
    except RecursionError:
        return [GraphQLError("The query nests fragments too deeply.")]
    errors = []
    if size.depth > max_depth:
        errors.append(GraphQLError(f"The query is {size.depth} levels deep; at most {max_depth} "
                                   "are allowed (GRAPHQL_MAX_DEPTH).",
                                   extensions={"details": {"depth": [f"At most {max_depth}."]}}))
    if size.cost > max_cost:
        errors.append(GraphQLError(f"The query costs {size.cost}; at most {max_cost} is allowed "
                                   "(GRAPHQL_MAX_COST: each field counts 1, times the limits of "
                                   "the lists above it).",
                                   extensions={"details": {"cost": [f"At most {max_cost}."]}}))
    return errors
