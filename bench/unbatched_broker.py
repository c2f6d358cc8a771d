"""The broker without batching, for measuring what batching buys.

    python bench/unbatched_broker.py bus --socket PATH [decnet bus options]

Runs ``decnet`` (same options) with one change: every PUB is routed and
written out to its subscribers before the next one is decoded, so each
delivery is its own ``writelines`` (its own ``write`` system call), as a
broker that does not batch would. Everything else — compiled decoding, index
lookup, outboxes, flow control — is the real broker's, except that it never
holds a publisher (``--max-stall-ms``). bench/capacity.py runs it with
``--unbatched``. Not for production: it exists to be compared.
"""

from __future__ import annotations

import sys

from decnet.bus import constants as C
from decnet.bus import unix_server
from decnet.bus.errors import FrameError, TopicError

route = unix_server.route
check_topic = unix_server.impl.check_topic


def handle(self, data: bytes = b"") -> None:
    broker = self.broker
    try:
        if data:
            self.decoder.feed(data)
        for verb, topic, body in self.decoder:
            if verb is C.PUB and self.hello and topic is not None and not topic.startswith(C.RESERVED_PREFIX):
                try:
                    check_topic(topic)
                except TopicError:
                    self._request(verb, topic, body)
                else:
                    broker.stats.published += 1
                    broker.stats.routed += route(broker.index, self.box, self.echo, topic, body)
                    broker.flush()  # this one event, now: no batching
                    continue
            else:
                self._request(verb, topic, body)
            if self.box.closing or self.gagged:
                break
    except FrameError as error:
        self.fail(error.code, str(error))
    broker.stats.pressure = False
    broker.flush()


unix_server.BrokerProtocol.handle = handle

if __name__ == "__main__":
    from decnet.cli import main

    sys.exit(main())
