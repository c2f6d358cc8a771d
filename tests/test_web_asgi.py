"""decnet web at the ASGI level, where the response is finite: the secret's
check, every auth refusal (401/403), the id's pattern (422), and that none of
them touches the bus. The frames themselves: tests/test_web_stream.py."""

import asyncio
import time
import warnings

import httpx
from fastapi import FastAPI
import jwt
import pytest

from decnet.bus import FakeBus
from decnet.web import sse
from decnet.web.app import create_app
from decnet.web.auth import has_scope
from decnet.web.config import SecretError, WebConfig, check_secret
from decnet.web.testing import TEST_SECRET, make_token

URL = "http://test/api/v1/topologies/{}/events"


@pytest.mark.parametrize("value, why", [
    (None, "not set"), ("", "not set"), ("short-but-random-Zq8", "at least 32"),
    ("changeme" * 4, "placeholder"), ("SECRET" * 6, "placeholder"), ("decnet" * 6, "placeholder"),
    ("ab" * 20, "distinct"),
])
def test_bad_secrets_are_refused(value, why):
    with pytest.raises(SecretError, match=why):
        check_secret(value)


def test_a_random_secret_is_taken(monkeypatch):
    assert check_secret(TEST_SECRET) == TEST_SECRET.encode()
    monkeypatch.delenv("DECNET_JWT_SECRET", raising=False)
    with pytest.raises(SecretError):
        create_app(FakeBus())


def test_config_bounds():
    for bad in (dict(send_timeout=0), dict(keepalive=-1), dict(client_queue=0)):
        with pytest.raises(ValueError):
            WebConfig(**bad)


@pytest.fixture(params=["served", "fastapi"])
def route(request):
    """The route as the app serves it (``events.serve``, ahead of FastAPI), and
    as FastAPI's router has it: both must answer alike."""
    return request.param


def get(bus, topology_id="t1", headers=None, token=None, params=None, route="served"):
    """One request through the ASGI app; the response."""
    app = create_app(bus, secret=TEST_SECRET)
    if route == "fastapi":
        served, app = app, (lambda scope, receive, send: FastAPI.__call__(served, scope, receive, send))
    headers = dict(headers or {})
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return await client.get(URL.format(topology_id), headers=headers, params=params)

    return asyncio.run(main())


def unsigned(claims):
    return jwt.encode(claims, None, algorithm="none")


def hs512_token():
    with warnings.catch_warnings():  # the test secret is short for HS512, which is refused anyway
        warnings.simplefilter("ignore")
        return make_token(algorithm="HS512")


NOW = int(time.time())
UNAUTHORIZED = {
    "no header": dict(),
    "basic scheme": dict(headers={"Authorization": "Basic dXNlcjpwYXNz"}),
    "bearer without token": dict(headers={"Authorization": "Bearer "}),
    "token in the query string": dict(params={"access_token": make_token(), "token": make_token()}),
    "wrong secret": dict(token=make_token("another-secret-0123456789-abcdefghijkl")),
    "alg none": dict(token=unsigned({"sub": "x", "exp": NOW + 600, "scope": "topology:events"})),
    "alg HS512": dict(token=hs512_token()),
    "expired": dict(token=make_token(ttl=-60)),
    "no exp": dict(token=jwt.encode({"sub": "x", "scope": "topology:events"}, TEST_SECRET, algorithm="HS256")),
    "no sub": dict(token=make_token(sub=None)),
    "garbage": dict(token="not.a.jwt"),
}


@pytest.mark.parametrize("case", list(UNAUTHORIZED))
def test_unauthorized(case, route):
    bus = FakeBus()
    response = get(bus, **UNAUTHORIZED[case], route=route)
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert bus.stats()["subscriptions"] == 0


@pytest.mark.parametrize("scope", [None, "", "topology:read", "topology:events:x other", "TOPOLOGY:EVENTS"])
def test_forbidden_without_the_scope(scope, route):
    bus = FakeBus()
    response = get(bus, token=make_token(scope=scope), route=route)
    assert response.status_code == 403
    assert 'insufficient_scope' in response.headers["www-authenticate"]
    assert bus.stats()["subscriptions"] == 0


@pytest.mark.parametrize("topology_id", ["*", ">", "t.1", "a" * 65, "T1", "t_1", "t%0A", "t1%20", "%2A"])
def test_bad_ids_are_422_without_a_subscription(topology_id, route):
    bus = FakeBus()
    response = get(bus, topology_id, token=make_token(), route=route)
    assert response.status_code == 422, response.text
    assert response.json()["detail"][0]["loc"] == ["path", "topology_id"]
    assert bus.stats()["subscriptions"] == 0


def test_both_routes_give_the_same_422():
    served, routed = (get(FakeBus(), "T1", token=make_token(), route=r) for r in ("served", "fastapi"))
    assert served.json() == routed.json()


def test_auth_is_decided_before_the_id(route):
    assert get(FakeBus(), "*", route=route).status_code == 401


def test_other_methods_and_paths_go_to_fastapi():
    app = create_app(FakeBus(), secret=TEST_SECRET)

    async def main():
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app)) as client:
            return [await client.post(URL.format("t1")), await client.get("http://test/api/v1/topologies/t1/x/events"),
                    await client.get("http://test/openapi.json")]

    post, nested, schema = asyncio.run(main())
    assert (post.status_code, nested.status_code, schema.status_code) == (405, 404, 200)
    assert "/api/v1/topologies/{topology_id}/events" in schema.json()["paths"]


def test_scope_among_others_is_enough():
    assert has_scope({"scope": "a topology:events b"}, "topology:events")
    assert not has_scope({"scope": ["topology:events"]}, "topology:events")  # OAuth 2: a space-separated string


def test_frame_bytes():
    assert sse.frame("mutation.applied", "2026-11-29T16:00:00.123Z", b'{"a":1}', event_id=7) == (
        b'id: 7\nevent: mutation.applied\n'
        b'data: {"v":1,"type":"mutation.applied","ts":"2026-11-29T16:00:00.123Z","payload":{"a":1}}\n\n')
    assert sse.retry(2000) == b"retry: 2000\n\n"


@pytest.mark.parametrize("raw, payload, ts", [
    (b"", b"null", None),
    (b'{"a":1}', b'{"a":1}', None),
    (b'{\n "a": 1}', b'{"a":1}', None),  # several lines: re-encoded on one
    (b'{"ts":"2026-11-29T16:00:00.123Z"}', b'{"ts":"2026-11-29T16:00:00.123Z"}', "2026-11-29T16:00:00.123Z"),
    (b'{"ts":"2026-11-29T17:00:00.5+01:00"}', None, "2026-11-29T16:00:00.500Z"),
    (b'{"ts":0}', None, "1970-01-01T00:00:00.000Z"),
    (b'{"ts":"yesterday"}', None, None),
    (b'[1,2]', b"[1,2]", None),
])
def test_event_json(raw, payload, ts):
    got_payload, got_ts = sse.event_json(raw)
    if payload is not None:
        assert got_payload == payload
    assert got_ts == ts
