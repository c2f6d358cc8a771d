import pytest

from decnet.bus import FrameError, constants as C

FRAMES = [
    ("HELLO", None, b'{"v":1,"name":"t","pid":1}'),
    ("SUB", "decky.*.state", b""),
    ("PUB", "decky.d1.state", b'{"state":"up"}'),
    ("EVT", "decky.d1.state", b'{"state":"up"}'),
    ("UNSUB", "decky.*.state", b""),
    ("PING", None, b""),
    ("PONG", None, b""),
    ("ERR", None, b'{"code":"x","message":"y"}'),
    ("BYE", None, b""),
]


def decode_all(impl, chunks, **kw):
    decoder = impl.FrameDecoder(**kw)
    out = []
    for chunk in chunks:
        out.extend(decoder.feed(chunk))
    return out, decoder


def stream():
    return b"".join(_encode(f) for f in FRAMES)


def _encode(frame):
    from decnet.bus._pure import encode

    return encode(*frame)


def test_encode_layout(impl):
    assert impl.encode("PUB", "a.b", b"{}") == b"PUB a.b\n\x00\x00\x00\x02{}"
    assert impl.encode("PING") == b"PING\n\x00\x00\x00\x00"
    assert impl.encode("EVT", "t", bytearray(b"xyz")) == b"EVT t\n\x00\x00\x00\x03xyz"
    assert impl.encode("EVT", "t", memoryview(b"xyz")) == b"EVT t\n\x00\x00\x00\x03xyz"


def test_round_trip_in_one_chunk(impl):
    frames, decoder = decode_all(impl, [stream()])
    assert frames == FRAMES
    assert decoder.buffered == 0


def test_round_trip_one_byte_at_a_time(impl):
    data = stream()
    frames, decoder = decode_all(impl, [data[i : i + 1] for i in range(len(data))])
    assert frames == FRAMES
    assert decoder.buffered == 0


def test_ten_thousand_frames_at_once(impl):
    frames = [("PUB", f"decky.d{i}.state", b'{"i":%d}' % i) for i in range(10_000)]
    out, _ = decode_all(impl, [b"".join(impl.encode(*f) for f in frames)])
    assert out == frames


def test_decoded_values_are_plain_types(impl):
    [(verb, arg, body)] = decode_all(impl, [impl.encode("PUB", "a", b"x")])[0]
    assert verb is C.PUB  # the shared constant itself
    assert type(arg) is str and type(body) is bytes


def test_incomplete_frame_waits_and_is_counted(impl):
    data = impl.encode("PUB", "a.b", b"0123456789")
    decoder = impl.FrameDecoder()
    assert list(decoder.feed(data[:-3])) == []
    assert decoder.buffered == len(data) - 3
    assert list(decoder.feed(data[-3:])) == [("PUB", "a.b", b"0123456789")]
    assert decoder.buffered == 0


def test_feed_while_frames_remain_keeps_order(impl):
    a, b, c = (impl.encode("PUB", t, t.encode()) for t in "abc")
    decoder = impl.FrameDecoder()
    it = decoder.feed(a + b)
    assert next(it) == ("PUB", "a", b"a")
    decoder.feed(c)
    assert list(decoder) == [("PUB", "b", b"b"), ("PUB", "c", b"c")]


def test_relay_turns_pub_into_the_evt_frame(impl):
    pub = impl.encode("PUB", "decky.d1.state", b'{"state":"up"}')
    frames, _ = decode_all(impl, [pub + impl.encode("PING"), pub[:7], pub[7:]], relay=True)
    evt = impl.encode("EVT", "decky.d1.state", b'{"state":"up"}')
    assert frames == [("PUB", "decky.d1.state", evt), ("PING", None, b""), ("PUB", "decky.d1.state", evt)]


def test_argument_may_be_empty_or_absent(impl):
    frames, _ = decode_all(impl, [b"PUB \n\x00\x00\x00\x00PUB\n\x00\x00\x00\x00PING x\n\x00\x00\x00\x00"])
    # Arguments are judged by the broker (bad_topic, connection kept), not by the framing.
    assert frames == [("PUB", "", b""), ("PUB", None, b""), ("PING", "x", b"")]


# -- framing errors


def first_error(impl, chunks, **kw):
    decoder = impl.FrameDecoder(**kw)
    got = []
    with pytest.raises(FrameError) as caught:
        for chunk in chunks:
            for frame in decoder.feed(chunk):
                got.append(frame)
    return caught.value, got, decoder


def test_line_of_512_bytes_is_accepted(impl):
    arg = "a" * (C.MAX_LINE - len("PUB \n"))
    frames, _ = decode_all(impl, [impl.encode("PUB", arg, b"")])
    assert frames == [("PUB", arg, b"")]


def test_line_of_513_bytes_is_refused_before_its_lf(impl):
    line = b"PUB " + b"a" * (C.MAX_LINE - 4)  # 512 bytes, no LF yet
    error, _, _ = first_error(impl, [line[:100], line[100:]])
    assert error.code == "line_too_long"


def test_non_ascii_line_is_refused_at_once(impl):
    error, _, _ = first_error(impl, [b"PUB d\xc3\xa9"])  # no LF yet: still refused
    assert error.code == "line_not_ascii"
    assert "0xc3 at offset 5" in str(error)


def test_unknown_verb(impl):
    error, _, _ = first_error(impl, [b"FOO a\n\x00\x00\x00\x00"])
    assert error.code == "unknown_verb" and "FOO" in str(error)
    assert first_error(impl, [b"\n\x00\x00\x00\x00"])[0].code == "unknown_verb"
    assert first_error(impl, [b"pub a\n\x00\x00\x00\x00"])[0].code == "unknown_verb"


def test_oversized_length_is_refused_before_the_body(impl):
    # A 4 GiB length field: refused as soon as the 4 bytes are read.
    error, _, decoder = first_error(impl, [b"PUB a\n\xff\xff\xff\xff"])
    assert error.code == "payload_too_large"
    assert str(C.DEFAULT_MAX_PAYLOAD) in str(error)


def test_body_limit_is_inclusive(impl):
    ok = impl.encode("PUB", "a", b"x" * 10)
    assert decode_all(impl, [ok], max_payload=10)[0] == [("PUB", "a", b"x" * 10)]
    error, _, _ = first_error(impl, [impl.encode("PUB", "a", b"x" * 11)], max_payload=10)
    assert error.code == "payload_too_large"
    assert decode_all(impl, [impl.encode("PING")], max_payload=0)[0] == [("PING", None, b"")]


def test_frames_before_the_error_come_out_first_and_the_decoder_stays_broken(impl):
    good = impl.encode("PUB", "a", b"1") + impl.encode("PING")
    error, got, decoder = first_error(impl, [good + b"NOPE\n\x00\x00\x00\x00" + impl.encode("PING")])
    assert got == [("PUB", "a", b"1"), ("PING", None, b"")]
    assert error.code == "unknown_verb"
    with pytest.raises(FrameError) as again:
        decoder.feed(impl.encode("PING"))
    assert again.value.code == "unknown_verb"


def test_bad_max_payload(impl):
    with pytest.raises(ValueError):
        impl.FrameDecoder(max_payload=-1)
    with pytest.raises(ValueError):
        impl.FrameDecoder(max_payload=C.MAX_LEN_FIELD + 1)


# -- encoder errors


def test_encode_refuses_what_would_break_framing(impl):
    with pytest.raises(FrameError) as caught:
        impl.encode("NOPE")
    assert caught.value.code == "unknown_verb"
    for arg in ["a\nPING", "dé", "a" * C.MAX_LINE]:
        with pytest.raises(FrameError) as caught:
            impl.encode("PUB", arg, b"")
        assert caught.value.code == "bad_line"
    with pytest.raises(TypeError):
        impl.encode("PUB", b"a.b", b"")
    with pytest.raises(TypeError):
        impl.encode("PUB", "a.b", "not bytes")
