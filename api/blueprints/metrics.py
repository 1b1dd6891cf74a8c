"""`GET /metrics`: Prometheus text for every process sharing the metrics directory, plus
figures read from the database and Redis at scrape time (`api.services.monitoring`).

Access: `Authorization: Bearer <METRICS_TOKEN>`, or any admin key (401 without either,
403 for a key without `admin`). The figures cover every account (no label names one). The
route is declared `@public` so that the scrape takes no rate-limit slot; it checks its
credentials itself, and `api.request_metrics` does not count it. Not in the OpenAPI
document: it is an operator's route, not part of the JSON API.
"""

import hmac

import peewee
import redis
from flask import Blueprint, Response, request
from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.multiprocess import MultiProcessCollector

from api import config, metrics
from api.auth import authenticate, has_scope, public
from api.errors import APIError
from api.services import monitoring

blp = Blueprint("metrics", __name__)


@blp.route("/metrics")
@public
def scrape():
    _check_access()
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(config.current().metrics_dir))
    registry.register(ScrapeTimeCollector())
    encode, content_type = choose_encoder(request.headers.get("Accept", ""))  # or OpenMetrics
    return Response(encode(registry), content_type=content_type, headers={"Cache-Control": "no-store"})


def _check_access() -> None:
    """Let the metrics token or an admin key through; 401 or 403 otherwise."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip() if scheme.lower() == "bearer" and token.strip() else None
    expected = config.current().metrics_token
    if token and expected and hmac.compare_digest(token.encode(), expected.encode()):
        return
    row = authenticate(token)
    if not has_scope(row.scopes.split(","), "admin"):
        raise APIError(403, "INSUFFICIENT_SCOPE", "This API key lacks the 'admin' scope.",
                       {"required": "admin"})


class ScrapeTimeCollector:
    """The backlog, jobs by state and queue depths, read now. When the database or Redis does
    not answer, its figures are left out of this scrape (and the error is counted)."""

    def collect(self):
        try:
            yield from self._from_database()
        except (peewee.OperationalError, peewee.InterfaceError):
            metrics.database_error("scrape")
        try:
            depths = monitoring.queue_depths()
        except (redis.RedisError, OSError):
            metrics.redis_error("scrape")
        else:
            family = GaugeMetricFamily("quiver_queue_depth", "Entries waiting in each RQ queue "
                                       "(and delivery ids waiting for a drain job).", labels=["queue"])
            for name, depth in depths.items():
                family.add_metric([name], depth)
            yield family

    @staticmethod
    def _from_database():
        pending = GaugeMetricFamily("quiver_webhook_deliveries_pending", "Delivery attempts not made "
                                    "yet: due now, or scheduled (a later retry).", labels=["state"])
        for state, count in monitoring.pending_deliveries().items():
            pending.add_metric([state], count)
        oldest = GaugeMetricFamily("quiver_oldest_undelivered_event_age_seconds", "Age of the oldest "
                                   "event with a pending delivery (0 when there is none).",
                                   value=monitoring.oldest_undelivered_age())
        jobs = GaugeMetricFamily("quiver_jobs", "Jobs by type and state.", labels=["type", "state"])
        for (kind, state), count in monitoring.jobs_by_state().items():
            jobs.add_metric([kind, state], count)
        yield from (pending, oldest, jobs)
