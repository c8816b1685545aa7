"""The simulator's Microsoft Graph front-end: the same mailboxes as EWS, spoken as Graph v1.0."""

from __future__ import annotations

#: The app registration the simulator accepts (tenant, client id, client secret).
DEFAULT_TENANT = "c0ffee00-0000-4000-8000-000000000016"
DEFAULT_CLIENT_ID = "5e1f0000-0000-4000-8000-0000ca15c0de"
DEFAULT_CLIENT_SECRET = "Simulat0r-Graph!"
GRAPH_PREFIX = "/v1.0"
