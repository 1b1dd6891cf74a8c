"""The generic CRUD blueprint: built once per declared entity from its `Entity`.

`/api/v1/{path}` (list, create) and `/api/v1/{path}/{id}` (get, patch, put,
delete), with pagination, filters, search, field selection, expansion and
ETag-based concurrency control.
"""

from urllib.parse import urlencode

from flask import g, request
from flask.views import MethodView
from flask_smorest import Blueprint

from api.auth import current_account_id, requires
from api.docs import (
    ErrorSchema,
    envelope,
    input_schema,
    links,
    list_envelope,
    list_parameters,
    record_schema,
    request_body,
    shape_parameters,
)
from api.entities import ENTITIES
from api.entities.base import Entity
from api.http import json_body, json_response, no_content, not_modified, success
from api.query import ListQuery, parse_list_args, parse_shape
from api.services import record_cache
from api.services.records import Page, reads_record, service_for
from api.services.writes import etag, etag_listed

BASE = "/api/v1"
ETAG = '"[!#-~]*"'  # an entity tag (RFC 9110): what `ETag` headers carry
# A write conditional on the version just read (links from a GET to the writes of its record).
CONDITIONAL = {"record_id": "$request.path.record_id", "header.If-Match": "$response.header.ETag"}


def _link_header(lq: ListQuery, page: Page) -> str | None:
    links = []
    args = request.args.to_dict(flat=True)
    if page.has_next:
        if lq.cursor is None:
            links.append(({**args, "page": str(lq.page + 1)}, "next"))
        else:
            links.append(({**args, "cursor": page.next_cursor}, "next"))
    if lq.cursor is None and lq.page > 1:
        links.append(({**args, "page": str(lq.page - 1)}, "prev"))
    return ", ".join(f'<{request.base_url}?{urlencode(a)}>; rel="{rel}"' for a, rel in links) or None


def _meta(lq: ListQuery, page: Page) -> dict:
    return {
        "page": None if lq.cursor else lq.page,
        "limit": lq.limit,
        "total": page.total,
        "hasNextPage": page.has_next,
        "hasPreviousPage": bool(lq.cursor) or lq.page > 1,
        "nextCursor": page.next_cursor,
    }


def make_blueprint(entity: Entity) -> Blueprint:
    """The CRUD blueprint of one entity."""
    service = service_for(entity.name)
    title = entity.title
    blp = Blueprint(entity.path, __name__, url_prefix=f"{BASE}/{entity.path}",
                    description=f"{title} records.")
    one = envelope(record_schema(entity), title)
    body_doc = request_body(input_schema(entity))
    patch_doc = request_body(input_schema(entity, partial=True))
    if_match = {"in": "header", "name": "If-Match", "required": False,
                "schema": {"type": "string", "pattern": f"^(\\*|{ETAG}( *, *{ETAG})*)$"},
                "example": "*",
                "description": "Write only if the record's ETag is one of these, or if it exists "
                               "(`*`); else 412."}
    item_path = f"{BASE}/{entity.path}/{{record_id}}"
    item_methods = ("get", "patch", "put", "delete")
    if_none_match = {"in": "header", "name": "If-None-Match", "required": False,
                     "schema": {"type": "string",
                                "pattern": f"^(\\*|(W/)?{ETAG}( *, *(W/)?{ETAG})*)$"},
                     "description": "Answer 304 if the record's ETag is this one."}

    def record_response(row, status: int = 200, fields=None, expand=()):
        data = service.serialize(current_account_id(), [row], fields, expand)[0]
        headers = {"ETag": etag(row)}
        if status == 201:
            headers["Location"] = f"{BASE}/{entity.path}/{row.id}"
        return success(data, status, headers=headers)

    def current(row, fields=None, expand=(), cached=None):
        """The record (`row`, or a `cached` entry of it), or 304 when `If-None-Match` names it."""
        tag = cached.etag if cached else etag(row)
        if_none_match = request.headers.get("If-None-Match")
        if if_none_match and etag_listed(if_none_match, tag, weak=True):
            return not_modified(tag)
        if cached:
            return json_response(cached.body, headers={"ETag": tag})
        return record_response(row, fields=fields, expand=expand)

    def reference_links(view):
        """A new record can be referenced at once: `POST /tasks` links to `POST /comments` with its
        `taskId` (merged into the body), for every relation that points at this entity."""
        for other in ENTITIES.values():
            for relation in other.relations:
                if relation.target != entity.name:
                    continue
                json_name = next(f.data_key or n for n, f in other.schema._declared_fields.items()
                                 if (f.attribute or n) == relation.attribute)
                link = {"operationRef": "#/paths/" + f"{BASE}/{other.path}".replace("/", "~1") + "/post",
                        "requestBody": {json_name: "$response.body#/data/id"}}
                name = f"create{other.title}With{relation.name.title()}"
                view = blp.doc(responses={201: {"links": {name: link}}})(view)
        return view

    @blp.route("")
    class Collection(MethodView):
        @requires("read")
        @blp.doc(parameters=list_parameters(entity), summary=f"List {entity.path}")
        @blp.response(200, list_envelope(entity))
        @blp.alt_response(400, schema=ErrorSchema)
        def get(self):
            lq = parse_list_args(entity, request.args)
            page = service.list_page(current_account_id(), lq)
            data = service.serialize(current_account_id(), page.rows, lq.fields, lq.expand)
            link = _link_header(lq, page)
            return success(data, meta=_meta(lq, page), headers={"Link": link} if link else None)

        @requires("write")
        @blp.doc(summary=f"Create a {entity.name}", **body_doc)
        @blp.doc(**links(201, item_path, item_methods, record_id="$response.body#/data/id"))
        @reference_links
        @blp.response(201, one)
        @blp.alt_response(400, schema=ErrorSchema)
        @blp.alt_response(409, schema=ErrorSchema)
        def post(self):
            row = service.create(current_account_id(), json_body())
            return record_response(row, 201)

    @blp.route("/<string:record_id>")
    class Item(MethodView):
        @requires("read")
        @reads_record(entity.name)
        @blp.doc(parameters=[*shape_parameters(entity), if_none_match], summary=f"Get a {entity.name}")
        @blp.response(200, one)
        @blp.doc(**links(200, item_path, ("patch", "put", "delete"), **CONDITIONAL))
        @blp.alt_response(304, description="Not modified (If-None-Match matched).")
        @blp.alt_response(404, schema=ErrorSchema)
        def get(self, record_id):
            if request.args:
                fields, expand = parse_shape(entity, request.args)
                return current(service.get(current_account_id(), record_id), fields, expand)
            read_under = g.get("record_tag") or record_cache.tag_ahead(record_id)
            cached = read_under and record_cache.lookup(entity.name, current_account_id(), record_id,
                                                        read_under)
            if cached:
                return current(None, cached=cached)
            response = current(service.get(current_account_id(), record_id))
            if read_under and response.status_code == 200:
                record_cache.remember(entity.name, current_account_id(), record_id, read_under,
                                      response.headers["ETag"], response.get_data())
            return response

        @requires("write")
        @blp.doc(summary=f"Update some fields of a {entity.name}", parameters=[if_match], **patch_doc)
        @blp.response(200, one)
        @blp.alt_response(404, schema=ErrorSchema)
        @blp.alt_response(409, schema=ErrorSchema)
        @blp.alt_response(412, schema=ErrorSchema)
        def patch(self, record_id):
            payload = json_body()
            row = service.update(current_account_id(), record_id, payload,
                                 if_match=request.headers.get("If-Match"))
            return record_response(row)

        @requires("write")
        @blp.doc(summary=f"Replace a {entity.name}", parameters=[if_match], **body_doc)
        @blp.response(200, one)
        @blp.alt_response(404, schema=ErrorSchema)
        @blp.alt_response(409, schema=ErrorSchema)
        @blp.alt_response(412, schema=ErrorSchema)
        def put(self, record_id):
            payload = json_body()
            row = service.update(current_account_id(), record_id, payload, replace=True,
                                 if_match=request.headers.get("If-Match"))
            return record_response(row)

        @requires("write")
        @blp.doc(summary=f"Delete a {entity.name}", parameters=[if_match])
        @blp.response(204)
        @blp.alt_response(404, schema=ErrorSchema)
        @blp.alt_response(412, schema=ErrorSchema)
        def delete(self, record_id):
            service.delete(current_account_id(), record_id,
                           if_match=request.headers.get("If-Match"))
            return no_content()

    Collection.__name__ = f"{title}Collection"
    Item.__name__ = f"{title}Item"
    return blp
