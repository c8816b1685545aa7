"""SimulatorClient: the JSON admin API over HTTP, for tests and benchmarks in other processes."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import requests

from calsync.simulator.core import DEFAULT_ACCOUNT
from calsync.simulator.server import EWS_PATH


class SimulatorClientError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.message = message


def _q(value: str) -> str:
    return quote(value, safe="@")


class SimulatorClient:
    def __init__(self, base_url: str, user: str = DEFAULT_ACCOUNT[0], password: str = DEFAULT_ACCOUNT[1]) -> None:
        self.base_url = base_url.rstrip("/")
        if self.base_url.endswith("/admin"):
            self.base_url = self.base_url[: -len("/admin")]
        self.user = user
        self.password = password
        self._session = requests.Session()

    @property
    def ews_url(self) -> str:
        return self.base_url + EWS_PATH

    @property
    def admin_url(self) -> str:
        return self.base_url + "/admin"

    def close(self) -> None:
        self._session.close()

    def _call(self, method: str, path: str, json: Any = None, params: dict[str, str] | None = None) -> Any:
        response = self._session.request(method, self.admin_url + path, json=json, params=params, timeout=60)
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            raise SimulatorClientError(response.status_code, message)
        if response.status_code == 204 or not response.content:
            return None
        return response.json()

    # mailboxes
    def list_mailboxes(self) -> list[dict[str, Any]]:
        return self._call("GET", "/mailboxes")

    def add_mailbox(self, email: str, impersonation_denied: bool = False) -> dict[str, Any]:
        return self._call("POST", "/mailboxes", {"email": email, "impersonation_denied": impersonation_denied})

    def delete_mailbox(self, email: str) -> None:
        self._call("DELETE", f"/mailboxes/{_q(email)}")

    def reset_sync_states(self, email: str) -> None:
        self._call("POST", f"/mailboxes/{_q(email)}/reset-sync-states")

    # items
    def list_items(self, email: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/mailboxes/{_q(email)}/items")

    def get_item(self, email: str, item_id: str) -> dict[str, Any]:
        return self._call("GET", f"/mailboxes/{_q(email)}/items/{_q(item_id)}")

    def create_item(self, email: str, data: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", f"/mailboxes/{_q(email)}/items", data)

    def update_item(self, email: str, item_id: str, data: dict[str, Any]) -> dict[str, Any]:
        return self._call("PATCH", f"/mailboxes/{_q(email)}/items/{_q(item_id)}", data)

    def delete_item(self, email: str, item_id: str) -> None:
        self._call("DELETE", f"/mailboxes/{_q(email)}/items/{_q(item_id)}")

    def cancel_item(self, email: str, item_id: str) -> dict[str, Any]:
        return self._call("POST", f"/mailboxes/{_q(email)}/items/{_q(item_id)}/cancel")

    def update_occurrence(self, email: str, item_id: str, original_start: str, data: dict[str, Any]) -> dict[str, Any]:
        path = f"/mailboxes/{_q(email)}/items/{_q(item_id)}/occurrences/{_q(original_start)}"
        return self._call("PATCH", path, data)

    def delete_occurrence(self, email: str, item_id: str, original_start: str) -> dict[str, Any]:
        path = f"/mailboxes/{_q(email)}/items/{_q(item_id)}/occurrences/{_q(original_start)}"
        return self._call("DELETE", path)

    def view(self, email: str, start: str, end: str) -> list[dict[str, Any]]:
        return self._call("GET", f"/mailboxes/{_q(email)}/view", params={"start": start, "end": end})

    # faults and stats
    def add_fault(self, **fault: Any) -> dict[str, Any]:
        return self._call("POST", "/faults", fault)

    def list_faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def delete_fault(self, fault_id: int) -> None:
        self._call("DELETE", f"/faults/{fault_id}")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/stats")

    def reset_stats(self) -> None:
        self._call("POST", "/stats/reset")

    def list_subscriptions(self) -> dict[str, Any]:
        """Push subscriptions Exchange holds ({"subscriptions": [...], "ended": {id: why}})."""
        return self._call("GET", "/subscriptions")

    def kill_subscription(self, sub_id: str) -> None:
        """Forget one push subscription silently (it stops pushing; calsync must notice)."""
        self._call("DELETE", f"/subscriptions/{quote(sub_id, safe='')}")

    # Graph change notifications (calsync.simulator.graph.push)
    def graph_subscriptions(self) -> list[dict[str, Any]]:
        """Every Graph subscription the simulator has held: state (active, expired, removed, deleted,
        killed), expiry, renewals and reauthorizations with their times, delivered/retried/dropped."""
        return self._call("GET", "/graph/subscriptions")

    def kill_graph_subscription(self, sub_id: str) -> None:
        """Forget one Graph subscription silently (no lifecycle event; renewing it answers 404)."""
        self._call("DELETE", f"/graph/subscriptions/{quote(sub_id, safe='')}")

    def graph_lifecycle(self, sub_id: str, event: str) -> dict[str, Any]:
        """Send reauthorizationRequired, subscriptionRemoved (which also removes it) or missed now;
        the answer says what the listener answered ({"event", "at", "status"})."""
        return self._call("POST", f"/graph/subscriptions/{quote(sub_id, safe='')}/lifecycle", {"event": event})

    def graph_options(self, **options: Any) -> dict[str, Any]:
        """Read, or change, the notification knobs: answer_timeout_s, slow_ms, handshake_timeout_s,
        slow_window, slow_min_answers, late_minutes, minute_seconds."""
        if not options:
            return self._call("GET", "/graph/options")
        return self._call("PUT", "/graph/options", options)
