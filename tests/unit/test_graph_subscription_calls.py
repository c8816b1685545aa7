"""Graph subscription errors and callback URLs, as pure functions: a 404 of a subscription is
never a missing mailbox, and the listener tells Graph's two URLs from EWS's by path."""

from __future__ import annotations

from calsync.push.callback import GRAPH_CHANGE, GRAPH_LIFECYCLE, graph_kind, graph_urls, secret_of
from calsync.source.graph.errors import GraphHttpError
from calsync.source.graph.subscriptions import classify_subscription


def test_subscription_errors_have_codes_of_their_own() -> None:
    cases = {
        (404, "ResourceNotFound", "The object was not found."): "GraphSubscriptionNotFound",
        (400, "ValidationError", "Subscription validation request failed. Notification endpoint must respond with "
              "200 OK to validation request."): "GraphSubscriptionValidationFailed",
        (403, "ExtensionError", "The maximum number of subscriptions has been reached"): "GraphSubscriptionLimit",
        (400, "InvalidRequest", "expirationDateTime must be within 4230 minutes"): "GraphSubscriptionRejected",
        (429, "TooManyRequests", "slow down"): "GraphThrottled",
        (404, "ErrorInvalidUser", "The requested user 'x@example.com' is invalid."): "GraphMailboxNotFound",
    }  # fmt: skip
    for (status, code, message), expected in cases.items():
        assert classify_subscription(GraphHttpError(status, code, message)).code == expected, (status, code)


def test_graph_urls_carry_the_secret_last_and_are_told_apart() -> None:
    change, lifecycle = graph_urls("https://crm.example.com/push/", "S" * 32)
    assert change == "https://crm.example.com/push/graph/" + "S" * 32
    assert lifecycle == "https://crm.example.com/push/graph-lifecycle/" + "S" * 32
    assert graph_kind("/push/graph/" + "S" * 32) == GRAPH_CHANGE
    assert graph_kind("/push/graph-lifecycle/" + "S" * 32) == GRAPH_LIFECYCLE
    assert graph_kind("/push/" + "S" * 32) is None  # EWS push's callback
    assert secret_of("/push/graph-lifecycle/" + "S" * 32) == "S" * 32
