"""Swagger UI's assets, served from the swagger-ui-bundle wheel (no CDN needed)."""

from pathlib import Path

import swagger_ui_bundle
from flask import Blueprint, send_from_directory

from api.auth import public

ASSETS = Path(swagger_ui_bundle.swagger_ui_path)
ASSETS_URL = "/api/v1/docs/assets/"

blp = Blueprint("docs-assets", __name__)


@blp.route(f"{ASSETS_URL}<path:filename>")
@public
def asset(filename):
    return send_from_directory(ASSETS, filename, max_age=86400)
