"""Differential fuzzing of the frame decoder: the compiled module against its twin.

    .venv/bin/python fuzz/fuzz_decoder.py [CORPUS_DIR] [libFuzzer flags]
    e.g. -max_total_time=600 -timeout=10 (``make fuzz`` does that)

atheris (libFuzzer for Python) mutates byte strings, guided by the coverage of
the pure-Python twin (instrumented below; the compiled module is C, which
atheris does not see). Every input is fed to both implementations, cut into the
same reads, and the target raises, which libFuzzer reports as a crash and saves
as ``crash-*``, when:

- anything but FrameError escapes the decoder, ``client_feed`` or ``relay``;
- the twins disagree on anything: frames, error code and message, the bytes
  fed when the error came, the bytes left buffered, what was delivered or routed;
- the compiled decoder answers differently when the same stream arrives whole;
- a refused frame had ``MAX_LINE + LEN_SIZE`` bytes or more buffered before the
  read that refused it, when frames are taken after every read (a limit is
  enforced as soon as the line or the length field is read: docs/protocol.md §3).

An input is ``MODE SEED_HI SEED_LO STREAM...``: MODE picks the API (decoder,
client_feed or relay), the body limit and, for the decoder, relay mode; SEED
the cut points and the type (bytes, bytearray, memoryview) of each read.
A corpus directory that is empty or missing is seeded with valid streams and
a few known refusals (with none given, a temporary one is made), and a
dictionary of the grammar's words is written beside it unless ``-dict=`` is given.

``tests/test_fuzz_decoder.py`` has the same properties as hypothesis tests
(500 examples each, with a model of docs/protocol.md §3); ``tests/test_fuzz_atheris.py``
runs this target for a few seconds.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile

import atheris

with atheris.instrument_imports(include=["decnet.bus._pure", "decnet.bus.errors"]):
    from decnet.bus import _pure as pure
    from decnet.bus import constants as C
    from decnet.bus.errors import FrameError

# The drivers the hypothesis tests use too (tests/twin_runs.py): one harness, two fuzzers.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, "tests"))
from twin_runs import broker, client  # noqa: E402

try:
    from decnet.bus import _fastmatch as fast
except ImportError:  # an install made with DECNET_BUS_NO_EXTENSIONS=1: nothing to compare with
    sys.exit("fuzz_decoder: the compiled module decnet.bus._fastmatch is not built; nothing to compare")

HEAD = C.MAX_LINE + C.LEN_SIZE
LIMITS = [C.DEFAULT_MAX_PAYLOAD, 0, 1, 16, 64, 300, 4096, C.MAX_LEN_FIELD]  # MODE >> 2 picks one
KINDS = [bytes, bytearray, memoryview]


class Disagreement(AssertionError):
    """What libFuzzer reports: the twins, or a twin and a rule, disagree."""


def check(ok: bool, what: str, *detail) -> None:
    if not ok:
        raise Disagreement(what + "".join(f"\n  {d!r}" for d in detail))


def chunking(data: bytes, seed: int):
    """``(chunks, pulls)``: ``data`` cut into reads, with sizes and types from
    ``seed`` (0: one read); ``pulls`` is None (take every frame after each read)
    or how many frames to take after each read (frames left waiting when the next
    read comes, as in the broker after a BYE)."""
    if not seed:
        return [data], None
    rng = random.Random(seed)
    top = rng.choice([1, 3, 16, 64, 600, 5000])  # one byte at a time up to a few big reads
    chunks, pos = [], 0
    while pos < len(data):
        size = rng.randint(1, top)
        chunks.append(rng.choice(KINDS)(data[pos : pos + size]))
        pos += size
    pulls = [rng.randint(0, 3) for _ in chunks] if rng.random() < 0.25 else None
    return chunks, pulls


def decode(impl, chunks, max_payload, relay, pulls=None):
    """``(frames, error, fed, buffered)``: anything but FrameError goes up to libFuzzer."""
    decoder = impl.FrameDecoder(max_payload=max_payload, relay=relay)
    frames, fed, last = [], 0, 0
    try:
        for i, chunk in enumerate(chunks):
            last = len(chunk)
            fed += last
            decoder.feed(chunk)
            for _ in range(pulls[i]) if pulls else ():
                frame = next(decoder, None)
                if frame is None:
                    break
                frames.append(frame)
            if not pulls:
                frames.extend(decoder)
        frames.extend(decoder)
    except FrameError as error:
        if not pulls:  # (frames left waiting put off looking at the next ones)
            held = decoder.buffered - last  # of the refused frame, before the read that refused it
            check(held < HEAD, "a refused frame was buffered past its line and length field", held, error)
        try:
            decoder.feed(b"PING\n\x00\x00\x00\x00")
            check(False, "a broken decoder took more bytes")
        except FrameError as again:
            check((again.code, str(again)) == (error.code, str(error)), "a broken decoder changed its error")
        return frames, (error.code, str(error)), fed, decoder.buffered
    return frames, None, fed, decoder.buffered


def TestOneInput(data: bytes) -> None:
    if len(data) < 3:
        return
    mode, seed, stream = data[0], int.from_bytes(data[1:3], "big"), bytes(data[3:])
    max_payload = LIMITS[(mode >> 2) % len(LIMITS)]
    chunks, pulls = chunking(stream, seed)
    api = mode & 3
    if api < 2:  # the decoder itself, relay mode or not
        relay = bool(api)
        got = decode(pure, chunks, max_payload, relay, pulls)
        want = decode(fast, chunks, max_payload, relay, pulls)
        check(got == want, "the twins disagree", got, want)
        whole = decode(fast, [stream], max_payload, relay)
        check(whole[:2] == want[:2], "the answer depends on how the stream was cut", whole, want)
    elif api == 2:
        got, want = client(pure, chunks, max_payload), client(fast, chunks, max_payload)
        check(got == want, "the twins disagree on client_feed", got, want)
    else:
        echo = bool(mode & 0x80)
        got, want = broker(pure, chunks, max_payload, echo), broker(fast, chunks, max_payload, echo)
        check(got == want, "the twins disagree on relay", got, want)


def seeds() -> list:
    """Valid streams and a few well-known refusals, under every mode, to start from."""
    enc = pure.encode
    streams = [
        enc("HELLO", None, b'{"v":1,"name":"t","pid":1}') + enc("SUB", "a.*") + enc("PING"),
        enc("PUB", "a.b", b'{"x":1}') + enc("PUB", "system.bus.health", b"{}") + enc("PUB", "a..b") + enc("BYE"),
        enc("EVT", "a.b", b"[1,2]") + b"EVT\n\x00\x00\x00\x00" + enc("ERR", None, b'{"code":"x"}') + enc("PONG"),
        enc("UNSUB", "a.>") + enc("PUB", "x" * 300, b"y" * 300),
        enc("PUB", "a." * 127 + "b", b"{}") + enc("PUB", "a." * 127 + "bb") + enc("PUB", "system.bus"),  # 255, 256
        b"PUB a\n\xff\xff\xff\xff" + b"z" * 64,
        b"PUB " + b"a" * 600,
        b"PUB d\xc3\xa9\n\x00\x00\x00\x00",
        b"NOPE\n\x00\x00\x00\x00",
    ]
    # Each API with the default limit, then the decoder with a limit of 16 bytes and of 4 GiB.
    modes = [0, 1, 2, 3, 3 << 2, 7 << 2]
    return [bytes([mode]) + cut + stream for stream in streams for mode in modes for cut in (b"\x00\x00", b"\x12\x34")]


# The words of the grammar, for libFuzzer to insert: the decoders look verbs up
# in a table or with memcmp, which its comparison hooks do not see.
WORDS = sorted(C.VERBS) + [" ", "\n", ".", "*", ">", "a.b", C.RESERVED_PREFIX, "\x00\x00\x00\x00", "\xff\xff\xff\xff"]


def prepare(argv: list) -> list:
    """``argv`` with a seeded corpus directory (the first one given, else a new
    temporary one) and, unless ``-dict=`` is given, a dictionary of WORDS
    written beside it as ``CORPUS.dict``."""
    dirs = [i for i, arg in enumerate(argv[1:], 1) if not arg.startswith("-")]
    if dirs:
        corpus = argv[dirs[0]].rstrip("/")
    else:
        corpus = os.path.join(tempfile.mkdtemp(prefix="fuzz_decoder."), "corpus")
        argv = argv[:1] + [corpus] + argv[1:]
        print(f"fuzz_decoder: corpus in {corpus}", file=sys.stderr)
    os.makedirs(corpus, exist_ok=True)
    if not os.listdir(corpus):
        for i, seed in enumerate(seeds()):
            with open(os.path.join(corpus, f"seed-{i:03d}"), "wb") as out:
                out.write(seed)
    if not any(arg.startswith("-dict=") for arg in argv):
        with open(corpus + ".dict", "w") as words:
            words.writelines('"%s"\n' % "".join("\\x%02x" % b for b in word.encode("latin-1")) for word in WORDS)
        argv = argv + [f"-dict={corpus}.dict"]
    return argv


def main() -> None:
    atheris.Setup(prepare(sys.argv), TestOneInput)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
