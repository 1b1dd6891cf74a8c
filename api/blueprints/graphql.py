"""`/api/v1/graphql`: POST runs a GraphQL request; GET shows GraphiQL, served with local assets.

GraphiQL's scripts and styles come from the `graphene-django-graphiql-static` wheel
(static files only; nothing of Django is imported), so the page needs no internet.
"""

from importlib.resources import files

from flask import Blueprint, Response, current_app, g, send_from_directory
from flask_smorest import Blueprint as DocumentedBlueprint
from marshmallow import Schema, fields

from api.auth import any_scope, public
from api.docs import ERROR_REF, request_body
from api.errors import APIError
from api.graphql import execution
from api.graphql.resolvers import Context
from api.http import json_body

PAGE = files("api") / "static" / "graphiql.html"
ASSETS = files("graphene_django_graphiql_static") / "static" / "graphene_django_graphiql_static"

blp = DocumentedBlueprint("graphql", __name__, url_prefix="/api/v1/graphql",
                          description="GraphQL over the same records, rules and events as REST.")
assets_blp = Blueprint("graphql-assets", __name__, url_prefix="/api/v1/graphql")


class GraphQLRequestSchema(Schema):
    """What `execution._check_request` accepts (the query must then parse and validate)."""

    query = fields.String(required=True, metadata={"pattern": "\\S", "description": (
        "A GraphQL document, at most GRAPHQL_MAX_QUERY_BYTES (default 32768) bytes of UTF-8.")})
    variables = fields.Dict(allow_none=True)
    operationName = fields.String(allow_none=True)
    extensions = fields.Raw(allow_none=True, metadata={"description": "Accepted and ignored."})


class GraphQLErrorSchema(Schema):
    message = fields.String(required=True)
    locations = fields.List(fields.Dict())
    path = fields.List(fields.Raw())
    extensions = fields.Dict(metadata={"description": "`code`, and `details` for validation errors."})


class GraphQLResponseSchema(Schema):
    data = fields.Dict(allow_none=True, required=True)
    errors = fields.List(fields.Nested(GraphQLErrorSchema))


class GraphQLErrorsSchema(Schema):
    errors = fields.List(fields.Nested(GraphQLErrorSchema), required=True)


_REFUSED = {"anyOf": [GraphQLErrorsSchema, ERROR_REF]}
EXAMPLE = {"query": "query($s: String) { tasks(limit: 5, filter: {status: $s}) { totalCount "
                    "edges { node { id title assignee { name } } } } }",
           "variables": {"s": "todo"}}


@blp.route("", methods=["POST"])
@any_scope
@blp.doc(summary="Run a GraphQL query or mutation", **request_body(GraphQLRequestSchema, EXAMPLE),
         responses={
    "400": {"description": "Not a GraphQL request, a syntax error (`BAD_REQUEST`), or a query "
                           "invalid for the schema or over the depth or cost limits "
                           "(`VALIDATION_FAILED`).",
            "content": {"application/json": {"schema": _REFUSED}}},
    "413": {"description": "The query is over `GRAPHQL_MAX_QUERY_BYTES`, or the body over "
                           "`MAX_CONTENT_LENGTH`.",
            "content": {"application/json": {"schema": _REFUSED}}}})
@blp.response(200, GraphQLResponseSchema)
def run_query():
    """Run one GraphQL request; queries need `read`, mutations `write` (checked per operation)."""
    try:
        payload = json_body()
    except APIError as error:
        status, body = error.status, execution.error_body(error.code, error.message)
    else:
        status, body = execution.run(payload, Context(g.account_id, frozenset(g.scopes)),
                                     current_app.config["QUIVER"])
    response = current_app.json.response(body)
    response.status_code = status
    return response


@blp.route("", methods=["GET"])
@public
@blp.doc(security=[], summary="GraphiQL, the in-browser GraphQL IDE", responses={
    "200": {"description": "The GraphiQL page.", "content": {"text/html": {"schema": {"type": "string"}}}}})
def graphiql():
    """The GraphiQL page."""
    response = Response(PAGE.read_bytes(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:")
    response.headers["Cache-Control"] = "no-cache"
    return response


@assets_blp.get("/assets/<path:filename>")
@public
def asset(filename):
    """GraphiQL's scripts and styles."""
    return send_from_directory(ASSETS, filename, max_age=86400)
