"""Example inbound source `tasks`: another service reports finished work, signed the Standard
Webhooks way (with `TASKS_WEBHOOK_SECRET`, a `whsec_…` secret) into the account
`TASKS_WEBHOOK_ACCOUNT`.

`task.completed` with `{"data": {"taskId": "tsk_…"}}` marks that task completed through
the record service (version, `completedAt`, `task.updated` event and webhooks as for any
write); other event types are acknowledged and left alone.
"""

from api.inbound import InboundEvent, inbound
from api.inbound_signing import standard_webhooks
from api.services.records import service_for


@inbound("tasks", verifier=standard_webhooks, secret_env="TASKS_WEBHOOK_SECRET")
def handle(event: InboundEvent) -> dict | None:
    """Complete the task a `task.completed` event names."""
    if event.type != "task.completed":
        return None
    data = event.payload.get("data")
    task_id = data.get("taskId") if isinstance(data, dict) else None
    if not isinstance(task_id, str):
        raise ValueError("task.completed needs data.taskId")
    task = service_for("task").update(event.account_id, task_id, {"status": "completed"})
    return {"taskId": task.id, "version": task.version}
