"""Bare Flask views to compare against, served by the same gunicorn settings.

`POST /import` json.loads the body and executemany's the items into the tasks
table in one transaction (the floor under `POST /api/v1/import/tasks`);
`GET /hello` is a hello world (the ceiling for any GET).
"""

import json
import os
import uuid
from datetime import UTC, datetime

from flask import Flask, request

from api.store import make_database

app = Flask(__name__)
database = make_database(os.environ["DATABASE_URL"])
ACCOUNT_ID = os.environ["BENCH_ACCOUNT_ID"]
COLUMNS = ("id", "account_id", "version", "created_at", "updated_at", "title", "status", "priority")


@app.post("/import")
def import_tasks():
    items = json.loads(request.get_data())["items"]
    now = datetime.now(UTC).replace(tzinfo=None)
    rows = [(f"tsk_{uuid.uuid4().hex[:26]}", ACCOUNT_ID, 1, now, now, item["title"],
             item.get("status", "todo"), item.get("priority", "medium")) for item in items]
    placeholders = ", ".join([database.param] * len(COLUMNS))
    sql = f'INSERT INTO "tasks" ({", ".join(COLUMNS)}) VALUES ({placeholders})'
    with database.connection_context(), database.atomic():
        database.cursor().executemany(sql, rows)
    return {"created": len(rows)}, 201


@app.get("/hello")
def hello():
    return {"hello": "world"}
