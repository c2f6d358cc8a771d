"""``decnet web``: live topology events over Server-Sent Events (docs/web.md).

Installed with the ``web`` extra (``pip install '.[web]'``): FastAPI, uvicorn,
httptools and PyJWT. ``decnet.web.app.create_app()`` is the ASGI factory.

| module | concern |
|---|---|
| ``config.py`` | the options (``WebConfig``) and the JWT secret's check |
| ``auth.py`` | the bearer token: HS256, ``exp``/``sub`` required, the scope |
| ``sse.py`` | the bytes of the stream: frames, envelope, topic → type |
| ``hub.py`` | one bus subscription per topology, shared by its streams |
| ``stream.py`` | one client's stream: an ASGI response with inline sends and a send timeout |
| ``events.py`` | the route ``GET /api/v1/topologies/{topology_id}/events`` |
| ``page.py`` | the live page ``GET /topologies/{topology_id}/live`` and its files in ``static/`` |
| ``app.py`` | ``create_app``: the FastAPI application (``WebApp``) |
| ``server.py`` | running the app under uvicorn (graceful end of streams) |
| ``testing.py`` | a ``decnet web`` process, a raw SSE client and tokens, for tests and benchmarks |
"""
