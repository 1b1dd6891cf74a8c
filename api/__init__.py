"""Quiver: a multi-account REST API over declared entities. `create_app` builds the Flask app."""

from inspect import iscoroutinefunction

from flask import Flask
from flask_cors import CORS
from flask_smorest import Api

from api import (
    auth,
    body_limits,
    config,
    db_lifecycle,
    endpoints,
    errors,
    http_layer,
    idempotency,
    metrics,
    rate_limit,
    redis_conn,
    request_log,
    store,
    uploads,
)
from api.blueprints import (
    api_keys,
    batch,
    bulk,
    console,
    docs_assets,
    events,
    files,
    graphql,
    health,
    inbound,
    jobs,
    live,
    records,
    stream,
    tus,
    webhooks,
)
from api.blueprints import metrics as scrape
from api.config import Settings
from api.docs import CommonErrorsPlugin, ErrorSchema, strict_nullable_refs, text_constraints
from api.entities import ENTITIES
from api.fields import Timestamp
from api.services import keys, record_cache

EXPOSED_HEADERS = ["ETag", "Location", "Link", "X-Request-ID", "Retry-After",
                   "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset",
                   "Idempotent-Replayed"]


class QuiverFlask(Flask):
    """Flask inside `api.http_layer` (what every HTTP response gets), remembering which
    functions are coroutines: it would ask `inspect` again for every hook and view of
    every request (about twenty calls each time)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._coroutines: dict = {}
        self.http_layer = http_layer.wrap(self.wsgi_app, metered=False)

    def __call__(self, environ, start_response):
        return self.http_layer(environ, start_response)

    def ensure_sync(self, func):
        key = getattr(func, "__func__", func)  # a view class's method is bound anew each request
        is_coroutine = self._coroutines.get(key)
        if is_coroutine is None:
            is_coroutine = self._coroutines[key] = iscoroutinefunction(func)
        return self.async_to_sync(func) if is_coroutine else func


class QuiverApi(Api):
    """flask-smorest's Api, documenting errors in the service's envelope."""

    ERROR_SCHEMA = ErrorSchema
    # No catch-all `default` response: every status an operation can answer is listed
    # (`CommonErrorsPlugin` adds the ones the shared machinery produces).
    DEFAULT_ERROR_RESPONSE_NAME = None

    def _openapi_json(self):
        """The spec, typed `application/json; charset=utf-8` like every other JSON response."""
        response = super()._openapi_json()
        response.content_type = "application/json; charset=utf-8"
        return response


def create_app(overrides: dict | None = None) -> Flask:
    """Build the app from environment variables (`overrides` win, for tests)."""
    settings = Settings.from_env(overrides)
    config.activate(settings)
    app = QuiverFlask(__name__)
    app.request_class = uploads.QuiverRequest
    app.teardown_request(uploads.discard_leftovers)
    app.config.update(
        QUIVER=settings,
        MAX_CONTENT_LENGTH=settings.max_content_length,
        API_TITLE="Quiver",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="/docs",
        OPENAPI_SWAGGER_UI_URL=docs_assets.ASSETS_URL,
        API_SPEC_OPTIONS={
            "components": {"securitySchemes": {
                "bearerAuth": {"type": "http", "scheme": "bearer",
                               "description": "An API key: `Authorization: Bearer sk_…`"}}},
            "security": [{"bearerAuth": []}],
        },
    )
    app.json.sort_keys = False
    app.json.ensure_ascii = False
    app.json.mimetype = "application/json; charset=utf-8"

    request_log.configure_logging(settings.log_level)
    store.configure(settings.database_url, settings.db_pool_size, settings.db_prepare)
    redis_conn.configure(settings)
    recording = metrics.configure(settings)
    keys.forget_all()  # keys read from another database or Redis are not this app's
    record_cache.configure(settings)

    app.http_layer = http_layer.wrap(app.wsgi_app, metered=recording)
    body_limits.init_app(app, settings)
    db_lifecycle.init_app(app)
    auth.init_app(app)
    rate_limit.init_app(app, settings)
    idempotency.init_app(app)
    if settings.cors_origins:
        CORS(app, origins=settings.cors_origins, expose_headers=EXPOSED_HEADERS,
             supports_credentials=False, max_age=600)

    api = QuiverApi(app, spec_kwargs={"extra_plugins": [CommonErrorsPlugin(app)]})
    api.register_field(Timestamp, "string", "date-time")
    api.ma_plugin.converter.add_attribute_function(strict_nullable_refs)
    api.ma_plugin.converter.add_attribute_function(text_constraints)
    api.register_blueprint(health.blp)
    api.register_blueprint(api_keys.blp)
    api.register_blueprint(events.blp)
    api.register_blueprint(webhooks.blp)
    api.register_blueprint(stream.blp)
    api.register_blueprint(batch.make_blueprint())
    api.register_blueprint(files.blp)
    api.register_blueprint(tus.blp)
    api.register_blueprint(jobs.blp)
    api.register_blueprint(inbound.blp)
    api.register_blueprint(endpoints.blueprint())
    for entity in ENTITIES.values():
        api.register_blueprint(bulk.make_blueprint(entity))
        api.register_blueprint(records.make_blueprint(entity))
    app.register_blueprint(docs_assets.blp)
    app.register_blueprint(live.blp)
    app.register_blueprint(console.blp)
    if recording:
        app.register_blueprint(scrape.blp)
    api.register_blueprint(graphql.blp)
    app.register_blueprint(graphql.assets_blp)
    errors.init_app(app)

    from api import cli
    cli.init_app(app)
    return app

