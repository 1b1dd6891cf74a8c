"""One GraphQL request: read, parse, limit, validate, check scopes, execute, shape errors.

Answers `(status, body)` with the body in GraphQL's shape (`{"data", "errors"}`):
- 413 `PAYLOAD_TOO_LARGE`: a query over `GRAPHQL_MAX_QUERY_BYTES`;
- 400 `BAD_REQUEST`: a body that is not a GraphQL request, or a syntax error;
- 400 `VALIDATION_FAILED`: over the depth or cost limit, or invalid for the schema;
- 200 otherwise, errors included: `INSUFFICIENT_SCOPE` (queries need `read`,
  mutations `write`), and the service's own errors (`VALIDATION_FAILED` with
  `details`, `NOT_FOUND`, `CONFLICT`, …) on the fields that raised them.
Unexpected exceptions are re-raised, so they get the service's 500/503 envelope.
"""

import json

from graphql import (
    DocumentNode,
    ExecutionContext,
    GraphQLError,
    GraphQLSyntaxError,
    OperationType,
    execute,
    get_operation_ast,
    parse,
    specified_rules,
    validate,
)
from graphql.validation import NoSchemaIntrospectionCustomRule

from api.config import Settings
from api.errors import APIError
from api.graphql import limits, resolvers
from api.graphql.resolvers import Context, require_scope
from api.graphql.schema import SCHEMA

REQUEST_KEYS = {"query", "variables", "operationName", "extensions"}
SCOPE_OF = {OperationType.QUERY: "read", OperationType.MUTATION: "write"}


class _RecordFieldsFirst(ExecutionContext):
    """graphql-core's executor, with a shortcut for a record's own fields.

    Their values are already JSON (`Entity.dump`), so they skip the resolver call,
    resolve info and serialization; nulls take the usual path (non-null checks).
    Every resolver here is synchronous, so no value is checked for being awaitable.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.is_awaitable = _never

    def execute_field(self, parent_type, source, field_nodes, path):
        definition = parent_type.fields.get(field_nodes[0].name.value)
        if definition is not None and definition.resolve is resolvers.scalar:
            value = source.data[field_nodes[0].name.value]
            if value is not None:
                return value
        return super().execute_field(parent_type, source, field_nodes, path)


def _never(_value) -> bool:
    return False


def error_body(code: str, message: str) -> dict:
    """A GraphQL-shaped body for a request that could not be read at all."""
    return {"errors": [{"message": message, "extensions": {"code": code}}]}


class _Refused(Exception):
    """A request answered before execution: an HTTP status, a code and GraphQL errors."""

    def __init__(self, status: int, code: str, *errors: GraphQLError):
        super().__init__(code)
        self.status, self.code, self.errors = status, code, errors


def _format(error: GraphQLError, default_code: str) -> dict:
    formatted = error.formatted
    original = error.original_error
    extensions = {"code": default_code, **(error.extensions or {})}
    if isinstance(original, APIError):
        formatted["message"] = original.message
        extensions = {"code": original.code}
        if original.details:
            extensions["details"] = original.details
    formatted["extensions"] = extensions
    return formatted


def _check_request(body: dict, settings: Settings) -> None:
    unknown = sorted(set(body) - REQUEST_KEYS)
    problem = None
    if unknown:
        problem = f"Unknown request field(s): {', '.join(unknown)}."
    elif not isinstance(body.get("query"), str) or not body["query"].strip():
        problem = "`query` must be a non-empty string."
    elif body.get("variables") is not None and not isinstance(body["variables"], dict):
        problem = "`variables` must be an object."
    elif body.get("operationName") is not None and not isinstance(body["operationName"], str):
        problem = "`operationName` must be a string."
    else:
        try:
            json.dumps(body, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            problem = "The request must be valid Unicode text (it holds a lone surrogate)."
    if problem:
        raise _Refused(400, "BAD_REQUEST", GraphQLError(problem))
    size = len(body["query"].encode("utf-8"))
    if size > settings.graphql_max_query_bytes:
        raise _Refused(413, "PAYLOAD_TOO_LARGE", GraphQLError(
            f"The query is {size} bytes; at most {settings.graphql_max_query_bytes} are allowed "
            "(GRAPHQL_MAX_QUERY_BYTES)."))


def _valid_document(query: str, variables: dict | None, settings: Settings) -> DocumentNode:
    try:
        document = parse(query)
    except GraphQLSyntaxError as error:
        raise _Refused(400, "BAD_REQUEST", error) from error
    too_big = limits.check(document, SCHEMA, variables, settings.graphql_max_depth,
                           settings.graphql_max_cost)
    if too_big:
        raise _Refused(400, "VALIDATION_FAILED", *too_big)
    rules = list(specified_rules)
    if not settings.graphql_introspection:
        rules.append(NoSchemaIntrospectionCustomRule)
    invalid = validate(SCHEMA, document, rules, hide_suggestions=not settings.graphql_introspection)
    if invalid:
        raise _Refused(400, "VALIDATION_FAILED", *invalid)
    return document


def _check_operation(document: DocumentNode, operation_name: str | None, context: Context) -> None:
    operation = get_operation_ast(document, operation_name)
    if operation is None:
        return  # no such operation: execution reports it
    if operation.operation not in SCOPE_OF:
        raise _Refused(400, "VALIDATION_FAILED", GraphQLError(
            "Subscriptions are not supported; the event streams (/api/v1/stream) carry changes.",
            operation))
    try:
        require_scope(context, SCOPE_OF[operation.operation])
    except APIError as error:
        raise _Refused(200, error.code, GraphQLError(error.message, original_error=error)) from error


def run(body: dict, context: Context, settings: Settings) -> tuple[int, dict]:
    """Run one GraphQL request body for `context`'s key: `(HTTP status, GraphQL response)`."""
    try:
        _check_request(body, settings)
        variables, operation_name = body.get("variables"), body.get("operationName")
        document = _valid_document(body["query"], variables, settings)
        _check_operation(document, operation_name, context)
    except _Refused as refused:
        response = {"errors": [_format(error, refused.code) for error in refused.errors]}
        return refused.status, ({"data": None, **response} if refused.status == 200 else response)
    result = execute(SCHEMA, document, context_value=context, variable_values=variables,
                     operation_name=operation_name, hide_suggestions=not settings.graphql_introspection,
                     execution_context_class=_RecordFieldsFirst)
    for error in result.errors or ():
        if error.original_error is not None and not isinstance(error.original_error,
                                                                (APIError, GraphQLError)):
            raise error.original_error
    response = {"data": result.data}
    if result.errors:
        response["errors"] = [_format(error, "VALIDATION_FAILED") for error in result.errors]
    return 200, response
