"""`GET /api/v1/analytics/dashboard`: task statistics computed with SQL aggregates.

Optional filters: `from` and `to` (RFC 3339, on `createdAt`) and `projectId`.
"""

from flask import request
from marshmallow import Schema, fields
from peewee import SQL, NodeList, fn

from api.auth import current_account_id
from api.custom import endpoint
from api.docs import envelope
from api.entities import ENTITIES
from api.entities.tasks import PRIORITIES, STATUSES
from api.errors import ValidationFailed
from api.http import success
from api.services.database import is_postgres
from api.timeutil import parse_rfc3339, utcnow


class PerformerSchema(Schema):
    userId = fields.String()
    name = fields.String()
    completed = fields.Integer()


class DashboardSchema(Schema):
    taskCompletionRate = fields.Float(metadata={"description": "Percent of tasks completed, 0-100."})
    averageTimeToComplete = fields.Float(allow_none=True,
                                         metadata={"description": "Seconds, createdAt to completedAt."})
    tasksByStatus = fields.Dict(keys=fields.String(), values=fields.Integer())
    tasksByPriority = fields.Dict(keys=fields.String(), values=fields.Integer())
    overdue = fields.Integer()
    topPerformers = fields.List(fields.Nested(PerformerSchema))


PARAMETERS = [
    {"in": "query", "name": "from", "schema": {"type": "string", "format": "date-time"}},
    {"in": "query", "name": "to", "schema": {"type": "string", "format": "date-time"}},
    {"in": "query", "name": "projectId", "schema": {"type": "string"}},
]


def _seconds_between(start, end):
    if is_postgres():
        return fn.EXTRACT(NodeList((SQL("EPOCH FROM"), end - start)))
    return (fn.julianday(end) - fn.julianday(start)) * 86400.0


def _scope():
    task = ENTITIES["task"].model
    errors, condition = {}, task.account_id == current_account_id()
    unknown = [k for k in request.args if k not in ("from", "to", "projectId")]
    for key in unknown:
        errors[key] = ["Unknown query parameter."]
    for key, compare in (("from", lambda c, v: c >= v), ("to", lambda c, v: c < v)):
        if key in request.args:
            try:
                condition &= compare(task.created_at, parse_rfc3339(request.args[key]))
            except ValueError:
                errors[key] = ["Not a valid RFC 3339 timestamp."]
    if "projectId" in request.args:
        condition &= task.project_id == request.args["projectId"].replace("\x00", "")
    if errors:
        raise ValidationFailed(errors, "Invalid query parameters.")
    return task, condition


@endpoint("/analytics/dashboard", scope="read", rate_limit="120/minute",
          summary="Task statistics for the account", parameters=PARAMETERS,
          response_schema=envelope(DashboardSchema, "Dashboard"))
def dashboard():
    task, condition = _scope()
    by_status = dict.fromkeys(STATUSES, 0)
    for status, count in (task.select(task.status, fn.COUNT(task.id)).where(condition)
                          .group_by(task.status).tuples()):
        by_status[status] = count
    by_priority = dict.fromkeys(PRIORITIES, 0)
    for priority, count in (task.select(task.priority, fn.COUNT(task.id)).where(condition)
                            .group_by(task.priority).tuples()):
        by_priority[priority] = count
    total, completed = sum(by_status.values()), by_status["completed"]
    average = (task.select(fn.AVG(_seconds_between(task.created_at, task.completed_at)))
               .where(condition & task.completed_at.is_null(False)).scalar())
    overdue = task.select().where(condition & (task.status != "completed")
                                  & (task.due_at < utcnow())).count()
    user = ENTITIES["user"].model
    performers = (task.select(task.assignee_id, user.name, fn.COUNT(task.id).alias("done"))
                  .join(user, on=(user.id == task.assignee_id))
                  .where(condition & (task.status == "completed"))
                  .group_by(task.assignee_id, user.name)
                  .order_by(fn.COUNT(task.id).desc(), task.assignee_id).limit(5).tuples())
    return success({
        "taskCompletionRate": round(completed * 100 / total, 2) if total else 0,
        "averageTimeToComplete": round(float(average), 3) if average is not None else None,
        "tasksByStatus": by_status,
        "tasksByPriority": by_priority,
        "overdue": overdue,
        "topPerformers": [{"userId": uid, "name": name, "completed": done}
                          for uid, name, done in performers],
    })
