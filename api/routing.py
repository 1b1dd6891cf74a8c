"""Which view function will handle a request: what route declarations (`@requires`,
`@limited`, `@large_body`, …) are read from."""

from flask import current_app, request


def view_for_request():
    """The function that will handle this request (a MethodView's method for class views);
    found once per request, since several hooks ask."""
    try:
        return request.quiver_view
    except AttributeError:
        rule = request.url_rule
        view = request.quiver_view = None if rule is None else view_for(rule.endpoint, request.method)
        return view


def view_for(endpoint: str, method: str):
    """The function that handles `method` at `endpoint` (a MethodView's method for class views)."""
    view = current_app.view_functions.get(endpoint)
    view_class = getattr(view, "view_class", None)
    if view_class is not None:
        method = method.lower()
        return getattr(view_class, method, None) or (
            getattr(view_class, "get", None) if method == "head" else None)
    return view
