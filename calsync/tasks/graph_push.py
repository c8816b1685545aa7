"""Graph change notifications on the workers: create, renew and delete subscriptions.

The push sweep (calsync.tasks.push) decides what is due; these tasks make the Graph calls
(sync queue: they go to Graph inside its fleet-wide slots, like reads):

- `calsync.graph_push_subscribe`: one subscription for one Graph operator, with a fresh URL
  secret and clientState (only their sha256 are stored). Graph validates both URLs against
  the listener before answering, so the row exists (state 'subscribing') before the call.
  A subscription made after one died (lapsed, removed, 404) starts a catch-up sync at once.
- `calsync.graph_push_renew`: PATCH the expiry (POST reauthorize first when Graph asked for
  it). 404: the subscription is gone, push is dead, a catch-up sync starts and the next sweep
  subscribes again. Any other failure is retried, backing off, until it would lapse.
- `calsync.graph_push_delete`: a subscription calsync no longer wants (superseded, operator
  disabled, push switched off) is deleted at Graph; Graph has no "Unsubscribe" answer.
"""

from __future__ import annotations

import datetime as dt
import logging

from calsync import metrics
from calsync.celery import app
from calsync.config import env
from calsync.errors import SourceError
from calsync.push import renewal
from calsync.push.callback import graph_urls, new_secret, secret_hash
from calsync.runtime import current_settings, source_for
from calsync.store import lifecycle, push
from calsync.store.db import transaction
from calsync.tasks import names
from calsync.tasks.base import CalsyncTask
from calsync.throttle import ThrottleBusy

log = logging.getLogger(__name__)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _code(err: Exception) -> tuple[str, float]:
    if isinstance(err, SourceError):
        return err.code, err.retry_after or 0.0
    return "ThrottleBusy", getattr(err, "retry_after", None) or 5.0


def subscribe_backoff(attempts: int, minute_seconds: float) -> float:
    """Before the next attempt after a failed one: half a minute, doubling up to an hour (the
    push clock's minutes: EWS push's 30 s, 60 s ... in production, seconds in scaled tests)."""
    return float(min(3600.0, max(1.0, 0.5 * minute_seconds) * 2 ** min(attempts, 7)))


def subscribe_one(operator_id: int) -> dict[str, object]:
    """One Graph subscription for one operator; plain Python (tests call it)."""
    from calsync.tasks.push import push_kick

    settings = current_settings()
    base_url = settings.notification_url
    if not base_url:
        return {"operator_id": operator_id, "skipped": "no notification_url"}
    secret, client_state = new_secret(), new_secret()
    with transaction() as conn:
        target = push.graph_target(conn, operator_id, settings.source.value)
        row_id = (
            push.begin_graph(conn, operator_id, target.email, base_url, secret_hash(secret), secret_hash(client_state))
            if target
            else None
        )
    if target is None or row_id is None:
        return {"operator_id": operator_id, "skipped": "not a Graph operator, disabled, or being subscribed"}
    change_url, lifecycle_url = graph_urls(base_url, secret)
    minute = env().push_minute_seconds
    try:
        sub_id, expires_at = source_for(settings).create_subscription(
            target.email, change_url, lifecycle_url, client_state, renewal.expiration(_now(), minute)
        )
    except (SourceError, ThrottleBusy) as err:
        code, wait = _code(err)
        with transaction() as conn:
            push.give_up(
                conn, row_id, code, max(wait, subscribe_backoff(push.subscribe_attempts(conn, operator_id), minute))
            )
        metrics.PUSH_SUBSCRIBES.labels("failed").inc()
        log.warning("operator %s: Graph subscription failed: %s", operator_id, code)
        return {"operator_id": operator_id, "failed": code}
    with transaction() as conn:
        active = push.activate_graph(
            conn, row_id, sub_id, expires_at, renewal.renew_at(operator_id, _now(), expires_at)
        )
        # After a death (lapse, removal, 404) the gap is fetched now, not at the next poll.
        catch_up = active and target.had_subscription and target.was_dead
        if catch_up:
            push.mark_owed(conn, [operator_id])
    if catch_up:
        push_kick.apply_async((operator_id,))
    metrics.PUSH_SUBSCRIBES.labels("subscribed" if active else "lost").inc()
    return {"operator_id": operator_id, "subscribed": active}


def renew_one(row_id: int) -> dict[str, object]:
    """Renew one Graph subscription; plain Python (tests call it)."""
    from calsync.tasks.push import push_kick

    with transaction() as conn:
        target = push.renewal_target(conn, row_id)
    if target is None:
        return {"row": row_id, "skipped": "not active"}
    settings = current_settings()
    source = source_for(settings)
    minute = env().push_minute_seconds
    op, email, sub_id = int(target["operator_id"]), str(target["email"]), str(target["subscription_id"])
    try:
        if target["reauthorize"]:
            source.reauthorize_subscription(email, sub_id)
        expires_at = source.renew_subscription(email, sub_id, renewal.expiration(_now(), minute))
    except (SourceError, ThrottleBusy) as err:
        code, wait = _code(err)
        if code == "GraphSubscriptionNotFound":
            with transaction() as conn:
                gone = push.graph_gone(conn, row_id, "not found at renewal")
                if gone is not None:
                    lifecycle.make_due(conn, [gone])
            metrics.PUSH_DEATHS.inc()
            metrics.GRAPH_RENEWALS.labels("gone").inc()
            log.warning("operator %s: Graph subscription gone at renewal (404): subscribing again", op)
            if gone is not None:
                push_kick.apply_async((gone,))
            return {"row": row_id, "gone": True}
        retry = max(wait, renewal.retry_in(int(target["renew_failures"]), _now(), target["expires_at"], minute))
        with transaction() as conn:
            push.renew_failed(conn, row_id, code, retry)
        metrics.GRAPH_RENEWALS.labels("failed").inc()
        log.warning("operator %s: Graph renewal failed (%s); again in %.1f s", op, code, retry)
        return {"row": row_id, "failed": code}
    with transaction() as conn:
        push.renewed(conn, row_id, expires_at, renewal.renew_at(op, _now(), expires_at))
    metrics.GRAPH_RENEWALS.labels("renewed").inc()
    return {"row": row_id, "renewed": expires_at.isoformat()}


def delete_one(row_id: int) -> dict[str, object]:
    """Delete one ended Graph subscription at Graph; plain Python (tests call it)."""
    with transaction() as conn:
        target = push.cleanup_target(conn, row_id)
    if target is None:
        return {"row": row_id, "skipped": "nothing to delete"}
    try:
        existed = source_for(current_settings()).delete_subscription(
            str(target["email"]), str(target["subscription_id"])
        )
    except (SourceError, ThrottleBusy) as err:
        code, _ = _code(err)
        log.warning("Graph subscription of row %s not deleted (%s); the sweep tries again", row_id, code)
        return {"row": row_id, "failed": code}  # the hold runs out and the sweep hands it out again
    with transaction() as conn:
        push.cleaned(conn, row_id)
    return {"row": row_id, "deleted": existed}


@app.task(bind=True, base=CalsyncTask, name=names.GRAPH_SUBSCRIBE, max_retries=0)
def graph_push_subscribe(self: CalsyncTask, operator_id: int) -> dict[str, object]:
    """Subscribe one Graph operator (a failed attempt is retried by the sweep, backing off)."""
    return subscribe_one(operator_id)


@app.task(bind=True, base=CalsyncTask, name=names.GRAPH_RENEW, max_retries=0)
def graph_push_renew(self: CalsyncTask, row_id: int) -> dict[str, object]:
    """Renew one Graph subscription (sent by the sweep with a countdown to its renew_at)."""
    return renew_one(row_id)


@app.task(bind=True, base=CalsyncTask, name=names.GRAPH_DELETE, max_retries=0)
def graph_push_delete(self: CalsyncTask, row_id: int) -> dict[str, object]:
    """Delete one ended Graph subscription at Graph."""
    return delete_one(row_id)
