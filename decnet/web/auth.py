"""The bearer token of the API: ``Authorization: Bearer <JWT>`` only, HS256
with the app's secret, ``exp`` and ``sub`` required, and the scope a route needs.

Missing or bad → 401 with ``WWW-Authenticate: Bearer`` (RFC 6750); valid but
without the scope → 403. A token anywhere else (the query string, a cookie) is
never read.
"""

from __future__ import annotations

from typing import Callable, Optional

import jwt
from fastapi import HTTPException, Request

ALGORITHMS = ["HS256"]
REQUIRED_CLAIMS = ["exp", "sub"]
EVENTS_SCOPE = "topology:events"


class AuthError(Exception):
    """A refused request: ``status`` (401 or 403), ``detail`` for the body and
    the ``WWW-Authenticate`` challenge."""

    def __init__(self, status: int, detail: str, challenge: str) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.challenge = challenge

    def http(self) -> HTTPException:
        """As FastAPI's exception."""
        return HTTPException(self.status, self.detail, headers={"WWW-Authenticate": self.challenge})


def unauthorized(detail: str, error: Optional[str] = "invalid_token") -> AuthError:
    """401; ``error`` is RFC 6750's code, None when no credentials came at all."""
    return AuthError(401, detail, "Bearer" if error is None else f'Bearer error="{error}"')


def bearer_token(header: Optional[str]) -> str:
    """The token of an ``Authorization: Bearer`` header, or AuthError 401."""
    if not header:
        raise unauthorized("an Authorization: Bearer token is required", error=None)
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("the Authorization header must be: Bearer <token>", error="invalid_request")
    return token


def decode(token: str, secret: bytes) -> dict:
    """The claims of ``token``, or AuthError 401."""
    try:
        return jwt.decode(token, secret, algorithms=ALGORITHMS, options={"require": REQUIRED_CLAIMS})
    except jwt.ExpiredSignatureError:
        raise unauthorized("the token has expired") from None
    except jwt.InvalidTokenError:
        raise unauthorized("the token is not valid") from None


def has_scope(claims: dict, scope: str) -> bool:
    """Whether the space-separated ``scope`` claim (OAuth 2 style) grants ``scope``."""
    granted = claims.get("scope")
    return isinstance(granted, str) and scope in granted.split()


def authorize(header: Optional[str], secret: bytes, scope: str) -> dict:
    """The claims of the ``Authorization`` header's token if it is valid and
    grants ``scope``; else AuthError (401, or 403 for the scope)."""
    claims = decode(bearer_token(header), secret)
    if not has_scope(claims, scope):
        raise AuthError(403, f"the token lacks the scope {scope!r}", f'Bearer error="insufficient_scope", scope="{scope}"')
    return claims


def require_scope(scope: str) -> Callable[[Request], dict]:
    """A FastAPI dependency: the token's claims, if it is valid and grants ``scope``."""

    def dependency(request: Request) -> dict:
        try:
            return authorize(request.headers.get("authorization"), request.app.state.jwt_secret, scope)
        except AuthError as error:
            raise error.http() from None

    return dependency
