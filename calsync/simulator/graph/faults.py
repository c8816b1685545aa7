"""Graph-only fault kinds, registered with the simulator's fault table.

* ``delta_gone``: the next delta requests answer 410 Gone, syncStateNotFound.
* ``token_expired``: the next requests answer 401 InvalidAuthenticationToken and the token
  they carried stops working (the client must get a new one).
* ``http_504``: 504 Gateway Timeout.
* ``consent_revoked`` (a standing condition, while it exists): new tokens carry no
  application roles, a token with roles is refused as revoked, and every request without
  roles answers 403 ErrorAccessDenied.
* ``mailbox_concurrency`` (a limit): more than ``limit`` (4) concurrent requests for one
  mailbox answer 429 "Application is over its MailboxConcurrency limit", as Graph does.
"""

from __future__ import annotations

from calsync.simulator import faults

ERROR_KINDS = ("delta_gone", "token_expired", "http_504")
LIMIT_KINDS = ("consent_revoked", "mailbox_concurrency")
OPERATIONS = ("graph_token", "graph_delta", "graph_event", "graph_events", "graph_instances", "graph_batch")

faults.register(
    kinds=ERROR_KINDS,
    operations=OPERATIONS,
    limit_kinds=LIMIT_KINDS,
    default_operation={"delta_gone": "graph_delta"},
)

#: Change-notification faults (graph/push.py): drawn per notification, per handshake or per renewal.
#:
#: * ``graph_duplicate``: the notification is sent twice (the copy in the next POST).
#: * ``graph_late``: the notification is held back and sent after later ones.
#: * ``graph_handshake_fail``: the validation handshake fails whatever the endpoint answers,
#:   so the subscription (or renewal) is refused with ValidationError.
#: * ``graph_handshake_on_renewal``: a renewal runs the handshake again ("where Graph asks").
PUSH_KINDS = ("graph_duplicate", "graph_late", "graph_handshake_fail", "graph_handshake_on_renewal")
PUSH_OPERATIONS = ("graph_notify", "graph_handshake", "graph_renew")

faults.register(
    kinds=PUSH_KINDS,
    operations=PUSH_OPERATIONS,
    default_operation={
        "graph_duplicate": "graph_notify",
        "graph_late": "graph_notify",
        "graph_handshake_fail": "graph_handshake",
        "graph_handshake_on_renewal": "graph_renew",
    },
)
