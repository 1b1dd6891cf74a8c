"""`/api/v1/graphql`: POST runs a GraphQL request; GET shows GraphiQL, served with local assets.

GraphiQL's scripts and styles come from the `graphene-django-graphiql-static` wheel
(static files only; nothing of Django is imported), so the page needs no internet.
"""

from importlib.resources import files

from flask import Blueprint, Response, current_app, g, send_from_directory

from api.auth import any_scope, public
from api.errors import APIError
from api.graphql import execution
from api.graphql.resolvers import Context
from api.http import json_body

PAGE = files("api") / "static" / "graphiql.html"
ASSETS = files("graphene_django_graphiql_static") / "static" / "graphene_django_graphiql_static"

blp = Blueprint("graphql", __name__, url_prefix="/api/v1/graphql")


@blp.post("")
@any_scope
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


@blp.get("")
@public
def graphiql():
    """The GraphiQL page."""
    response = Response(PAGE.read_bytes(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:")
    response.headers["Cache-Control"] = "no-cache"
    return response


@blp.get("/assets/<path:filename>")
@public
def asset(filename):
    """GraphiQL's scripts and styles."""
    return send_from_directory(ASSETS, filename, max_age=86400)
