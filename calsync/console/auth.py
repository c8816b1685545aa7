"""Who is logged in: argon2-hashed admin passwords, or a trusted reverse proxy's header."""

from __future__ import annotations

import hmac
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from starlette.requests import Request

from calsync.console.config import ConsoleConfig

_hasher = PasswordHasher()
# Verifying against this when the user does not exist keeps the answer time the same, so
# timing does not reveal which names are administrators.
_DUMMY = _hasher.hash(secrets.token_hex(16))

CSRF_FIELD = "csrf_token"


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def check_password(config: ConsoleConfig, name: str, password: str) -> bool:
    hashed = config.admins.get(name)
    try:
        return _hasher.verify(hashed or _DUMMY, password) and hashed is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def current_user(request: Request) -> str | None:
    config: ConsoleConfig = request.app.state.config
    if config.trusted_header and config.trusts(request.client.host if request.client else None):
        name = request.headers.get(config.trusted_header, "").strip()
        if name:
            return name
    user = request.session.get("user")
    return user if isinstance(user, str) and user else None


def csrf_token(request: Request) -> str:
    """The session's token, made on first use; every form carries it back."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


def csrf_ok(request: Request, submitted: object) -> bool:
    expected = request.session.get("csrf")
    return isinstance(expected, str) and isinstance(submitted, str) and hmac.compare_digest(expected, submitted)
