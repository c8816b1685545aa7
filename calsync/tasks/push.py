"""Push notifications on the workers: the kick a notification starts, subscribing, the sweep.

- `calsync.push_kick` (dispatch queue): the operator a change notification names is claimed
  with the dispatcher's claim (calsync.store.lifecycle.claim_pushed) and, being in sync, is
  polled in the kick itself (calsync.tasks.poll.poll_now): one task per pushed change. A
  first sync or a failing operator starts its batch chain as the dispatcher would. While a
  sync of the operator is running, the kick waits for it to end and then starts one more.
  Each kick claims its own operator only: claiming every owed operator at once and
  polling them in chunks (as this did before) put each claimed change behind the others of
  its chunk, and under a steady 100 changes a second the kicks meeting a backlog made it
  grow (README, push benchmark).
- `calsync.push_subscribe` (sync queue: it calls Exchange, inside the fleet-wide throttle):
  one Subscribe, StatusFrequency = notification_frequency_minutes, callback URL =
  notification_url + a fresh secret.
- `calsync.push_sweep` (beat): subscriptions of disabled operators end; subscriptions
  silent for twice StatusFrequency are dead (a catch-up sync starts at once and the
  operator is subscribed again); operators past their first sync without an up-to-date
  subscription are subscribed; a kick lost with a killed listener is made good; push dead
  longer than the notification frequency sends the failure email, once per episode.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from calsync import metrics
from calsync.celery import app
from calsync.config import env
from calsync.errors import SourceError
from calsync.listener.kick import KEY_TTL_MS, kick_key
from calsync.notify.email import send, smtp_config
from calsync.push.callback import callback_url, new_secret, secret_hash
from calsync.runner.chunk import read_chunk
from calsync.runtime import current_settings, redis_client, source_for
from calsync.store import lifecycle, push
from calsync.store.db import transaction
from calsync.tasks import names
from calsync.tasks.base import CalsyncTask
from calsync.tasks.poll import poll_now
from calsync.throttle import ThrottleBusy

log = logging.getLogger(__name__)

# Exchange refuses a watermark older than 30 days; one close to that is not worth a failed call.
WATERMARK_MAX_AGE = dt.timedelta(days=25)
RESUBSCRIBE_CODES = ("ErrorInvalidWatermark", "ErrorSubscriptionNotFound")
SUBSCRIBES_PER_SWEEP = 500
# A notification recorded this long ago whose operator has not been claimed since lost its kick.
LOST_KICK_SECONDS = 15.0


def kick_retry_countdown(retries: int) -> float:
    """Waiting for a running sync to end: 0.1, 0.2, 0.4, 0.8 s, then every second, so the
    owed sync starts within a second of the running one's end (one UPDATE per try)."""
    return min(1.0, 0.1 * (2 ** min(retries, 4)))


@app.task(bind=True, base=CalsyncTask, name=names.PUSH_KICK, max_retries=900, acks_late=True)
def push_kick(self: CalsyncTask, operator_id: int) -> dict[str, object]:
    """Sync the operator a change notification names, in this task (at most one pending per operator)."""
    from calsync.tasks.dispatch import enqueue_chains

    client = redis_client()
    # Before the claim: a change recorded after this point kicks again.
    client.delete(kick_key(operator_id))
    read = None
    with transaction() as conn:
        claim, why = lifecycle.claim_pushed(conn, operator_id, env().lease_seconds)
        if claim is not None and claim.quiet:
            # What the poll reads first (the pause, the operator's cursor), in the claim's transaction.
            pair = [(claim.operator_id, claim.token)]
            read = read_chunk(conn, pair)
    if read is not None:
        return {"operator_id": operator_id, "polled": poll_now(self.owner, pair, read)}
    if claim is not None:  # a first sync or a failing operator: the batch chain, as the dispatcher starts it
        enqueue_chains([claim])
        return {"operator_id": operator_id, "claimed": 1}
    if why == "in_flight":
        # Coalesce what arrives meanwhile into this task, and start one more sync after the running one.
        client.set(kick_key(operator_id), b"1", px=KEY_TTL_MS)
        raise self.retry(countdown=kick_retry_countdown(self.request.retries))
    return {"operator_id": operator_id, "skipped": why}


def subscribe_one(operator_id: int) -> dict[str, object]:
    """One Subscribe for one operator; plain Python (tests call it)."""
    settings = current_settings()
    base_url = settings.notification_url
    if not base_url:
        return {"operator_id": operator_id, "skipped": "no notification_url"}
    frequency = settings.notification_frequency_minutes
    secret = new_secret()
    with transaction() as conn:
        target = push.target(conn, operator_id, settings.source.value)
        row_id = (
            push.begin(conn, operator_id, target.email, base_url, frequency, secret_hash(secret)) if target else None
        )
    if target is None or row_id is None:
        return {"operator_id": operator_id, "skipped": "disabled or being subscribed"}
    watermark = target.watermark
    if watermark and (target.watermark_at is None or dt.datetime.now(dt.UTC) - target.watermark_at > WATERMARK_MAX_AGE):
        watermark = None
    source = source_for(settings)
    url = callback_url(base_url, secret)
    try:
        try:
            sub_id, new_watermark = source.subscribe_push(target.email, url, watermark, frequency)
        except SourceError as err:
            if not (watermark and err.code in RESUBSCRIBE_CODES):
                raise
            # The resume point is gone: subscribe from now, and a catch-up sync covers the gap.
            log.info("operator %s: %s; subscribing without a watermark", operator_id, err.code)
            watermark = None
            sub_id, new_watermark = source.subscribe_push(target.email, url, None, frequency)
    except (SourceError, ThrottleBusy) as err:
        code = err.code if isinstance(err, SourceError) else "ThrottleBusy"
        wait = (err.retry_after or 0.0) if isinstance(err, SourceError) else (err.retry_after or 5.0)
        with transaction() as conn:
            push.give_up(conn, row_id, code, max(wait, _subscribe_backoff(conn, operator_id)))
        metrics.PUSH_SUBSCRIBES.labels("failed").inc()
        log.warning("operator %s: Subscribe failed: %s", operator_id, code)
        return {"operator_id": operator_id, "failed": code}
    with transaction() as conn:
        active = push.activate(conn, row_id, sub_id, new_watermark)
        # A gap between subscriptions (the last one died, or it could not be resumed from):
        # what happened in it is fetched by a sync now, not left to the next poll. A first
        # subscription has no gap: the poll scheduled by the first sync covers the moments
        # before it.
        catch_up = active and target.had_subscription and (watermark is None or target.was_dead)
        if catch_up:
            push.mark_owed(conn, [operator_id])
    if catch_up:
        push_kick.apply_async((operator_id,))
    metrics.PUSH_SUBSCRIBES.labels("subscribed" if active else "lost").inc()
    return {"operator_id": operator_id, "subscribed": active}


def _subscribe_backoff(conn: Any, operator_id: int) -> float:
    row = conn.execute("SELECT subscribe_attempts FROM push_status WHERE operator_id = %s", (operator_id,)).fetchone()
    attempts = int(row["subscribe_attempts"]) if row else 0
    return float(min(3600.0, 30.0 * (2 ** min(attempts, 7))))


@app.task(bind=True, base=CalsyncTask, name=names.PUSH_SUBSCRIBE, max_retries=0)
def push_subscribe(self: CalsyncTask, operator_id: int) -> dict[str, object]:
    """Subscribe one operator's calendar (a failed attempt is retried by the sweep, backing off)."""
    return subscribe_one(operator_id)


def sweep() -> dict[str, Any]:
    """One pass of the sweep; plain Python (tests call it)."""
    settings = current_settings()
    minute = env().push_minute_seconds
    hold = graph_hold_seconds(minute)
    if not settings.notification_url:
        with transaction() as conn:
            ended = push.end_all(conn, "push switched off (no notification_url)")
            # Their polls were stretched to the safety interval: polling is the mechanism again.
            lifecycle.make_due(conn, ended)
            cleanups = push.cleanups_due(conn, hold)
        _graph_deletes(cleanups)
        return {"ended": len(ended), **({"graph_deletes": len(cleanups)} if cleanups else {})}
    with transaction() as conn:
        disabled = push.end_disabled(conn)
        dead = push.find_dead(conn, minute)
        # Graph has no keep-alives: a Graph subscription is dead once it lapsed unrenewed.
        lapsed = push.find_lapsed(conn)
        dead += lapsed
        # A dead subscription may have missed changes: sync now, as if notified.
        push.mark_owed(conn, dead)
        lost = push.owed_and_idle(conn, LOST_KICK_SECONDS)
        lifecycle.make_due(conn, dead + lost)
        need = push.needing_subscription(
            conn,
            settings.notification_url,
            settings.notification_frequency_minutes,
            SUBSCRIBES_PER_SWEEP,
            default_source=settings.source.value,
        )
        need_graph = push.needing_graph_subscription(
            conn, settings.notification_url, SUBSCRIBES_PER_SWEEP, hold_seconds=max(hold, 5.0),
            default_source=settings.source.value,
        )  # fmt: skip
        # Renewals due before the next sweep (and a margin), each sent at its own time.
        renewals = push.renewals_due(conn, 2 * sweep_schedule_seconds(), hold)
        cleanups = push.cleanups_due(conn, hold)
        overdue = push.dead_too_long(conn, settings.notification_frequency_minutes, minute)
        push.prune(conn)
    for op in dead:
        metrics.PUSH_DEATHS.inc()
        if op in lapsed:
            log.warning("operator %s: Graph subscription lapsed (not renewed in time): dead", op)
        else:
            log.warning("operator %s: push subscription silent for twice its StatusFrequency: dead", op)
    for op in sorted(set(dead + lost)):
        push_kick.apply_async((op,))
    for op in need:
        push_subscribe.apply_async((op,))
    _graph_calls(need_graph, renewals, cleanups)
    if overdue:
        _email_dead(overdue, settings.failure_recipients(), settings.notification_frequency_minutes)
    return {"disabled": disabled, "dead": len(dead), "lost_kicks": len(lost), "subscribing": len(need),
            "emailed": len(overdue), "graph_subscribing": len(need_graph), "graph_renewals": len(renewals),
            "graph_deletes": len(cleanups)}  # fmt: skip


def graph_hold_seconds(minute_seconds: float) -> float:
    """How long a Graph call handed to a worker is not handed out again: 2 scaled minutes
    (120 s in production), at least two sweeps."""
    return min(120.0, max(2.0 * minute_seconds, 2.0 * sweep_schedule_seconds() + 1.0))


def _graph_calls(subscribe: list[int], renewals: list[push.Renewal], deletes: list[int]) -> None:
    from calsync.tasks.graph_push import graph_push_renew, graph_push_subscribe

    for op in subscribe:
        graph_push_subscribe.apply_async((op,))
    for r in renewals:
        graph_push_renew.apply_async((r.row_id,), countdown=r.due_in if r.due_in > 0.01 else None)
    _graph_deletes(deletes)


def _graph_deletes(row_ids: list[int]) -> None:
    from calsync.tasks.graph_push import graph_push_delete

    for row_id in row_ids:
        graph_push_delete.apply_async((row_id,))


def _email_dead(rows: list[dict[str, Any]], recipients: list[str], minutes: int) -> None:
    """One email for the operators whose push died more than the notification frequency ago."""
    from email.message import EmailMessage
    from email.utils import formatdate, make_msgid

    config = smtp_config()
    if not recipients or config is None:
        log.error("%d operator(s) without push for over %d min; no email sent (%s)", len(rows), minutes,
                  "notify_sync_failure_to is empty" if not recipients else "CALSYNC_SMTP_URL is not set")  # fmt: skip
        return
    lines = [
        f"Exchange has not reached the push listener for these mailboxes for more than {minutes} minutes.",
        "Their calendars are still synced by polling (the normal interval) while calsync subscribes again.",
        "",
        "Fix: check that notification_url is reachable from the Exchange servers (firewall, TLS, the",
        "`calsync listener serve` processes behind it), then `calsync status` shows them subscribed.",
        "For mailboxes read through Microsoft Graph: their change-notification subscription lapsed or",
        "could not be made (Graph's validation request did not reach the listener, or renewals failed:",
        "see the last error).",
        "",
    ]
    for r in rows:
        lines.append(f"- {r['display_name'] or r['email']} <{r['email']}>: no notification since "
                     f"{r['dead_since']:%Y-%m-%d %H:%M} UTC" + (f" (last error {r['last_error']})" if r["last_error"] else ""))  # fmt: skip
    msg = EmailMessage()
    msg["Subject"] = f"calsync: push notifications stopped for {len(rows)} mailbox(es)"
    msg["From"] = env().smtp_from
    msg["To"] = ", ".join(recipients)
    msg["Date"] = formatdate(localtime=False, usegmt=True)
    msg["Message-ID"] = make_msgid(domain="calsync")
    msg.set_content("\n".join(lines) + "\n")
    try:
        send(config, msg)
        metrics.NOTIFICATIONS.labels("push_dead").inc()
    except Exception as exc:  # the episode stays marked: one email per episode, not a storm
        log.error("push failure email not sent: %s", type(exc).__name__)


@app.task(bind=True, base=CalsyncTask, name=names.PUSH_SWEEP, acks_late=False)
def push_sweep(self: CalsyncTask) -> dict[str, Any]:
    """Beat: keep every enabled operator subscribed and notice dead subscriptions."""
    return sweep()


def sweep_schedule_seconds() -> float:
    return max(1.0, math.ceil(env().push_sweep_seconds * 10) / 10)
