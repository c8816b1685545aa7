"""One batch of one operator, end to end: source -> sync -> store.

This is the unit every task runs and every test can run without Celery. It reads all it
needs from Postgres (never from task arguments beyond ids and the lease token), calls the
source outside any transaction, and writes the batch's rows together with the new cursor in
one transaction, fenced by the lease token.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded

from calsync import errors
from calsync.config import env
from calsync.errors import InvalidCursor, SourceError
from calsync.runner.backoff import MAX_RETRY_COUNTDOWN
from calsync.runner.outage import passes_through, struck_by_time_limit
from calsync.settings import SyncSettings
from calsync.source.port import CalendarSource
from calsync.store import appointments, failures, lifecycle, refusals
from calsync.store import settings as settings_store
from calsync.store.db import transaction
from calsync.store.lifecycle import LeaseLost, PageCounts
from calsync.sync.batch import exceptions_to_fetch, items_to_fetch, plan_batch
from calsync.sync.model import Appointment, RefusedItem, SyncPage, Window


class BatchFailed(Exception):
    """The batch failed after it took the lease; carries the classified error and the token to
    retry with. Whatever raised it (the source, planning, the write), it has a catalogue code."""

    def __init__(self, error: SourceError, operator_id: int, token: int) -> None:
        super().__init__(str(error))
        self.error = error
        self.operator_id = operator_id
        self.token = token


@dataclass(frozen=True, slots=True)
class BatchOutcome:
    operator_id: int
    token: int | None  # the token to hand to the next batch; None when nothing more to do
    more: bool
    created: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    resync_started: bool = False
    skipped_reason: str | None = None
    occurrences_written: int = 0  # occurrence/exception rows, apart from Exchange items
    occurrences_deleted: int = 0
    run_seconds: float | None = None  # set by the batch that finished the run
    recovery_owed: bool = False  # the run ended a failure episode that was emailed
    push_latencies: tuple[float, ...] = ()  # notification-to-commit seconds of the notifications this run covered


def _split(
    items: Sequence[Appointment | RefusedItem],
) -> tuple[dict[str, Appointment], dict[str, RefusedItem]]:
    """The source's answer: the items it read, and those it refused (by id)."""
    fetched: dict[str, Appointment] = {}
    refused: dict[str, RefusedItem] = {}
    for item in items:
        if isinstance(item, RefusedItem):
            refused[item.item_id] = item
        else:
            fetched[item.item_id] = item
    return fetched, refused


def window_for(settings: SyncSettings, now: dt.datetime) -> Window:
    return Window(
        now=now,
        past_days=settings.past_window_days,
        future_days=settings.future_horizon_days,
        private_details=settings.sync_private_details,
    )


def run_batch(
    source: CalendarSource,
    operator_id: int,
    token: int | None,
    owner: str,
    now: dt.datetime | None = None,
    prefetched: tuple[str | None, SyncPage] | None = None,
) -> BatchOutcome:
    """`prefetched`: a page a quiet poll already read, with the cursor it was read from; it
    is used when that cursor is still the operator's (otherwise the page is read again)."""
    with transaction() as conn:
        state = lifecycle.renew(conn, operator_id, token, owner, env().lease_seconds)
        if state is None:
            return BatchOutcome(operator_id, None, more=False, skipped_reason="not leased to this batch")
        settings = settings_store.load(conn)
        # The run row is created once, by the first batch of a run, and reused below.
        state = dataclasses.replace(state, run_id=lifecycle.start_run(conn, state))
        # The page a poll read counts only while its cursor is still the operator's.
        page = prefetched[1] if prefetched is not None and prefetched[0] == state.cursor else None
        # A pushed change's page is already read: what the mirror knows of its items is read
        # here, not in a transaction of its own (one fewer per pushed change).
        known = None
        if page is not None and page.changes:
            known = appointments.known_change_keys(conn, operator_id, [c.item_id for c in page.changes])
    token = state.lease_token
    try:
        return _leased_batch(source, state, settings, now or dt.datetime.now(dt.UTC), page, known)
    except Exception as exc:
        if struck_by_time_limit(exc):
            # The task ran out of time (a slow or trickling Exchange): give the lease back now
            # instead of at its expiry, and count it as a failure so it ends in an email.
            with transaction() as conn:
                lifecycle.release(
                    conn, operator_id, token, errors.TIME_LIMIT,
                    "the batch was stopped by the task's soft time limit",
                    min(MAX_RETRY_COUNTDOWN, max(60.0, settings.poll_interval_minutes * 60.0)),
                )  # fmt: skip
            raise SoftTimeLimitExceeded() from exc
        if isinstance(exc, (BatchFailed, LeaseLost)) or passes_through(exc):
            raise
        # Planning, conversion or the write met something it cannot handle (a bug, an answer
        # never seen): classified like a source error, so it is retried, recorded and emailed.
        raise BatchFailed(errors.unexpected(exc), operator_id, token) from exc


def _leased_batch(
    source: CalendarSource,
    state: lifecycle.OperatorState,
    settings: SyncSettings,
    now: dt.datetime,
    read_page: SyncPage | None,
    read_known: dict[str, str] | None,
) -> BatchOutcome:
    """`read_page`: the page at the operator's cursor, already read (else it is read here);
    `read_known`: the mirror's change keys of its items, already read with it."""
    operator_id, token = state.operator_id, state.lease_token
    window = window_for(settings, now)
    try:
        page = read_page if read_page is not None else source.sync_page(state.email, state.cursor, settings.batch_size)
        ids = [c.item_id for c in page.changes]
        known: dict[str, str] = {}
        if read_known is not None:
            known = read_known
        elif ids:
            with transaction() as conn:
                known = appointments.known_change_keys(conn, operator_id, ids)
        wanted = items_to_fetch(page.changes, known, window)
        fetched, refused = _split(source.get_items(state.email, wanted))
        # Exceptions carry their own subject, location, times...: one more GetItem for the batch.
        # An exception the source refuses is left out: its occurrence keeps the series' fields.
        exception_ids = exceptions_to_fetch(fetched.values(), window)
        exceptions = _split(source.get_items(state.email, exception_ids))[0] if exception_ids else {}
    except InvalidCursor:
        with transaction() as conn:
            lifecycle.fence(conn, operator_id, token)
            lifecycle.start_resync(conn, operator_id, token)
        return BatchOutcome(operator_id, token, more=True, resync_started=True)
    except SourceError as exc:
        raise BatchFailed(exc, operator_id, token) from exc

    full_sync = state.stage in ("initial", "resync")
    run_seconds: float | None = None
    recovery_owed = False
    push_latencies: list[float] = []
    with transaction() as conn:
        lifecycle.fence(conn, operator_id, token)
        run_id = state.run_id
        assert run_id is not None
        # Re-read under the row lock: exact even if this batch already ran once and committed.
        known = appointments.known_change_keys(conn, operator_id, ids)
        plan = plan_batch(page.changes, fetched, known, window, exceptions, refused)
        if full_sync:  # a switched source lists the same meetings under new ids: keep the rows
            appointments.adopt_by_uid(conn, operator_id, state.generation, plan)
        counts = appointments.apply_plan(conn, operator_id, plan)
        refusals.record(conn, operator_id, plan.refused, plan.settled)
        if full_sync:
            appointments.mark_seen(conn, operator_id, state.generation, plan.seen)
        lifecycle.commit_page(
            conn,
            operator_id,
            token,
            run_id,
            page.sync_state,
            PageCounts(counts.created, counts.updated, counts.deleted, plan.unchanged),
        )
        deleted = counts.deleted
        if page.series_ids is not None:
            deleted += appointments.delete_series_except(conn, operator_id, page.series_ids)
        if page.includes_last:
            if full_sync:
                deleted += appointments.sweep_unseen(conn, operator_id, state.generation, page.listed_window)
            run_seconds = lifecycle.finish(conn, operator_id, token, run_id, settings.poll_interval_minutes)
            # In the same transaction: a run that succeeds ends the operator's failure episode.
            recovery_owed = failures.close_episode(conn, operator_id)
            if settings.notification_url:
                push_latencies = lifecycle.push_after_finish(
                    conn, [operator_id], settings.push_safety_poll_minutes, env().push_minute_seconds
                )
    return BatchOutcome(
        operator_id,
        token if not page.includes_last else None,
        more=not page.includes_last,
        created=counts.created,
        updated=counts.updated,
        deleted=deleted,
        unchanged=plan.unchanged,
        occurrences_written=counts.occurrences_written,
        occurrences_deleted=counts.occurrences_deleted,
        run_seconds=run_seconds,
        recovery_owed=recovery_owed,
        push_latencies=tuple(push_latencies),
    )
