"""The bridges' header block on the NATS wire, written and read without
nats-py's general code.

Every message a bridge exports carries the same two headers (``ORIGIN``,
then ``SEQ``; only the sequence number changes), so the export pump builds
the block once (``publish_headed``) and an importing client splits a block
of exactly that shape itself (``read_headers_fast``). Both go through
nats-py 2.x internals (the ``bridge`` extra pins 2.x) and step aside where
those are missing: the export pump asks ``headed_supported`` first, and
``read_headers_fast`` leaves a client without them as it is.
"""

from __future__ import annotations

from .mapping import ORIGIN, SEQ


def headed_supported() -> bool:
    """Whether nats-py's client has the internals ``publish_headed`` uses."""
    try:
        from nats.aio.client import Client
    except ImportError:
        return False
    client = Client()
    return all(hasattr(client, name) for name in (
        "_send_command", "_flush_pending", "_flush_queue", "_max_pending_size", "_pending_data_size",
        "_max_payload", "stats", "is_draining_pubs"))


async def publish_headed(nc, subject: str, header: bytes, payload: bytes) -> None:
    """``nc.publish(subject, payload, headers=...)`` with the header block
    given as bytes. nats-py builds and checks the block anew for every
    message (a regular expression, strip, translate and encode per header:
    about 4 of its 5 µs per publish here); the bridge's headers are the same
    but for the sequence number, so it builds the block once. The checks and
    the buffering below are nats-py's own ``publish``, through its 2.x
    internals (the ``bridge`` extra pins nats-py 2.x; the export pump uses
    ``publish`` where ``headed_supported`` finds them missing)."""
    from nats import errors

    if nc.is_closed:
        raise errors.ConnectionClosedError
    if nc.is_draining_pubs:
        raise errors.ConnectionDrainingError
    size = len(payload)
    if not nc.is_connected and (nc._max_pending_size <= 0 or size + nc._pending_data_size > nc._max_pending_size):
        raise errors.OutboundBufferLimitError  # reconnecting, and the buffer is full
    if size > nc._max_payload:
        raise errors.MaxPayloadError
    nc.stats["out_msgs"] += 1
    nc.stats["out_bytes"] += size
    await nc._send_command(b"HPUB %s %d %d\r\n%s%s\r\n" % (subject.encode(), len(header), len(header) + size,
                                                             header, payload))
    if nc._flush_queue is not None and nc._flush_queue.empty():
        await nc._flush_pending()


def read_headers_fast(nc) -> None:
    """Let ``nc`` read the bridges' own header block without its general
    parser. nats-py parses every message's headers line by line and tests
    each character of each name for whitespace: about a quarter of an
    import's cost. A block of exactly the shape the export pump writes
    (``Decnet-Origin``, then ``Decnet-Seq``, nothing else) is split here
    into the same two strings; any other block goes to nats-py's parser as
    before. An instance attribute over nats-py 2.x's ``_process_headers``;
    nothing changes where it is missing."""
    general = getattr(nc, "_process_headers", None)
    if general is None:
        return
    start = f"NATS/1.0\r\n{ORIGIN}: ".encode()
    seq = f"{SEQ}: ".encode()
    cut_origin, cut_seq = len(start) - len(b"NATS/1.0\r\n"), len(seq)

    async def process_headers(headers):
        if headers and headers.startswith(start):
            lines = headers.split(b"\r\n")
            if len(lines) == 5 and lines[2].startswith(seq) and not lines[3] and not lines[4]:
                return {ORIGIN: lines[1][cut_origin:].strip().decode("utf-8", "replace"),
                        SEQ: lines[2][cut_seq:].strip().decode("utf-8", "replace")}
        return await general(headers)

    nc._process_headers = process_headers
