"""The bearer token of the API: ``Authorization: Bearer <JWT>`` only, HS256
with the app's secret, ``exp`` and ``sub`` required, and the scope a route needs.

Missing or bad → 401 with ``WWW-Authenticate: Bearer`` (RFC 6750); valid but
without the scope → 403. A token anywhere else (the query string, a cookie) is
never read.
"""

from __future__ import annotations

from typing import Callable

import jwt
from fastapi import HTTPException, Request

ALGORITHMS = ["HS256"]
REQUIRED_CLAIMS = ["exp", "sub"]
EVENTS_SCOPE = "topology:events"


def unauthorized(detail: str, error: str | None = "invalid_token") -> HTTPException:
    """401; ``error`` is RFC 6750's code, None when no credentials came at all."""
    challenge = "Bearer" if error is None else f'Bearer error="{error}"'
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": challenge})


def decode(token: str, secret: bytes) -> dict:
    """The claims of ``token``, or HTTPException 401."""
    try:
        claims = jwt.decode(token, secret, algorithms=ALGORITHMS, options={"require": REQUIRED_CLAIMS})
    except jwt.ExpiredSignatureError:
        raise unauthorized("the token has expired") from None
    except jwt.InvalidTokenError:
        raise unauthorized("the token is not valid") from None
    return claims


def bearer_token(request: Request) -> str:
    """The token of the ``Authorization: Bearer`` header, or HTTPException 401."""
    header = request.headers.get("authorization")
    if not header:
        raise unauthorized("an Authorization: Bearer token is required", error=None)
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("the Authorization header must be: Bearer <token>", error="invalid_request")
    return token


def has_scope(claims: dict, scope: str) -> bool:
    """Whether the space-separated ``scope`` claim (OAuth 2 style) grants ``scope``."""
    granted = claims.get("scope")
    return isinstance(granted, str) and scope in granted.split()


def require_scope(scope: str) -> Callable[[Request], dict]:
    """A FastAPI dependency: the token's claims, if it is valid and grants ``scope``."""

    def dependency(request: Request) -> dict:
        claims = decode(bearer_token(request), request.app.state.jwt_secret)
        if not has_scope(claims, scope):
            raise HTTPException(
                status_code=403, detail=f"the token lacks the scope {scope!r}",
                headers={"WWW-Authenticate": f'Bearer error="insufficient_scope", scope="{scope}"'})
        return claims

    return dependency
