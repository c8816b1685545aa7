"""The console's Starlette application: routes, sessions, security headers."""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from calsync.console import operators, pages
from calsync.console.config import ConsoleConfig
from calsync.console.web import HERE, action, render

# Scripts and styles only from this server: the console works offline, and an injected
# inline script would not run.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                    (b"x-frame-options", b"DENY"),
                ]
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def health(request: Request) -> Response:
    return Response("ok\n", media_type="text/plain")


async def database_down(request: Request, exc: Exception) -> Response:
    """Postgres unreachable: say so (without the URL's password) instead of a bare 500."""
    from calsync.config import env
    from calsync.store.migrate import redact

    return render(
        request,
        "error.html",
        status_code=503,
        title="Database unreachable",
        message=f"The console cannot reach Postgres at {redact(env().database_url)}; nothing was changed. "
        "Start it or fix CALSYNC_DATABASE_URL, then reload.",
    )


def create_app(config: ConsoleConfig) -> Starlette:
    upload_limit = config.max_upload_bytes
    routes = [
        Route("/healthz", health),
        Route("/login", pages.login_form, methods=["GET"]),
        Route("/login", pages.login_submit, methods=["POST"]),
        Route("/logout", pages.logout, methods=["POST"]),
        Route("/", pages.overview),
        Route("/history", pages.history),
        Route("/settings", pages.settings_form, methods=["GET"]),
        Route("/settings", action(pages.settings_save), methods=["POST"]),
        Route("/operators", operators.operator_list, methods=["GET"]),
        Route("/operators/add", action(operators.add), methods=["POST"]),
        Route("/operators/bulk", action(operators.bulk), methods=["POST"]),
        Route("/operators/import", operators.import_form, methods=["GET"]),
        Route("/operators/import", action(operators.import_preview, max_part_size=upload_limit), methods=["POST"]),
        Route(
            "/operators/import/confirm",
            action(operators.import_confirm, max_part_size=upload_limit * 2),
            methods=["POST"],
        ),
        Route("/operators/{operator_id:int}", operators.operator_detail, methods=["GET"]),
        Route("/operators/{operator_id:int}/calendar-sync", action(operators.toggle), methods=["POST"]),
        Route("/operators/{operator_id:int}/email", action(operators.change), methods=["POST"]),
        Route("/operators/{operator_id:int}/disable", operators.disable_confirm, methods=["GET"]),
        Route("/operators/{operator_id:int}/disable", action(operators.disable), methods=["POST"]),
        Route("/operators/{operator_id:int}/sync-now", action(operators.sync_now), methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(HERE / "static")), name="static"),
    ]
    middleware = [
        Middleware(SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=config.secret_key,
            session_cookie="calsync_console",
            max_age=config.session_max_age,
            same_site="lax",
            https_only=config.cookie_secure,
        ),
    ]
    app = Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers={psycopg.OperationalError: database_down, PoolTimeout: database_down},
    )
    app.state.config = config
    return app
