"""`/api/v1/api-keys`: create (secret shown once), list, get and revoke keys (admin);
`/api/v1/api-keys/current`: the calling key itself (any scope), so a client can learn its scopes."""

from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import any_scope, current_account_id, current_key_id, requires
from api.docs import ErrorSchema, envelope, links, list_of, load_view, request_body
from api.http import json_body, no_content, success
from api.idempotency import reveals_secret
from api.services import accounts
from api.services.accounts import ApiKeySchema, CreatedApiKeySchema

blp = Blueprint("api-keys", __name__, url_prefix="/api/v1/api-keys",
                description="API keys of the caller's account (admin scope; `/current`: any scope).")


@blp.route("")
class ApiKeys(MethodView):
    @requires("admin")
    @blp.response(200, list_of(ApiKeySchema, "ApiKeyList"))
    def get(self):
        return success([accounts.serialize_key(k) for k in accounts.list_keys(current_account_id())])

    @requires("admin")
    @reveals_secret
    @blp.doc(**request_body(load_view(ApiKeySchema, "ApiKeyInput")))
    @blp.response(201, envelope(CreatedApiKeySchema, "CreatedApiKey"))
    @blp.doc(**links(201, "/api/v1/api-keys/{key_id}", ("get", "delete"), key_id="$response.body#/data/id"))
    @blp.alt_response(400, schema=ErrorSchema)
    def post(self):
        row, secret = accounts.create_key_from_payload(current_account_id(), json_body())
        data = {**accounts.serialize_key(row), "key": secret}
        return success(data, 201, headers={"Location": f"/api/v1/api-keys/{row.id}"})


@blp.route("/current", methods=["GET"])
@any_scope
@blp.doc(summary="The calling key: id, name, prefix, scopes, rate limit (any scope)")
@blp.response(200, envelope(ApiKeySchema, "CurrentApiKey"))
def current_key():
    return success(accounts.serialize_key(accounts.get_key(current_account_id(), current_key_id())))


@blp.route("/<string:key_id>")
class ApiKeyItem(MethodView):
    @requires("admin")
    @blp.response(200, envelope(ApiKeySchema, "ApiKey"))
    @blp.alt_response(404, schema=ErrorSchema)
    def get(self, key_id):
        return success(accounts.serialize_key(accounts.get_key(current_account_id(), key_id)))

    @requires("admin")
    @blp.response(204)
    @blp.alt_response(404, schema=ErrorSchema)
    def delete(self, key_id):
        accounts.revoke_key(current_account_id(), key_id)
        return no_content()
