"""Wire constants shared by the compiled hot path and its pure-Python twin.

Both implementations import these, so a limit or a verb is defined once.
"""

from __future__ import annotations

#: Protocol version carried in HELLO.
PROTOCOL_VERSION = 1

# Verbs (docs/protocol.md §3). The decoder hands these exact str objects out, so callers may
# compare with ``is`` as well as ``==``.
HELLO = "HELLO"
SUB = "SUB"
UNSUB = "UNSUB"
PUB = "PUB"
EVT = "EVT"
PING = "PING"
PONG = "PONG"
ERR = "ERR"
BYE = "BYE"
VERBS = frozenset({HELLO, SUB, UNSUB, PUB, EVT, PING, PONG, ERR, BYE})
#: Verbs whose line carries a topic or pattern.
VERBS_WITH_ARG = frozenset({SUB, UNSUB, PUB, EVT})

#: A frame line, LF included, is at most this many bytes.
MAX_LINE = 512
#: A topic or pattern is 1..MAX_TOPIC bytes.
MAX_TOPIC = 255
#: Bytes of the big-endian body length that follows the line.
LEN_SIZE = 4
#: The largest body the length field can express.
MAX_LEN_FIELD = 0xFFFFFFFF
#: Default largest body the broker accepts (``--max-payload``).
DEFAULT_MAX_PAYLOAD = 1024 * 1024

#: Default number of topics a SubscriptionIndex remembers lookups for (0 turns
#: the cache off). NATS's sublist keeps 1,024; so do we — a host publishes on a
#: few hundred distinct topics (one per decky and state), which fits.
DEFAULT_CACHE_SIZE = 1024

# Error codes carried by FrameError/TopicError and by ERR frames.
E_LINE_TOO_LONG = "line_too_long"
E_LINE_NOT_ASCII = "line_not_ascii"
E_UNKNOWN_VERB = "unknown_verb"
E_PAYLOAD_TOO_LARGE = "payload_too_large"
E_BAD_LINE = "bad_line"
E_BAD_TOPIC = "bad_topic"
E_BAD_PATTERN = "bad_pattern"

# The broker's defaults and bounds (queue limit, heartbeat, ...) are
# BrokerConfig's, in config.py; the wire's are above.

#: Topics under this prefix are published by the broker only (system.bus.health).
RESERVED_PREFIX = "system.bus."

# Client defaults (docs/protocol.md §6).
DEFAULT_SUBSCRIPTION_QUEUE = 10_000  # events buffered per Subscription before drop-oldest
PUBLISH_WAIT = 0.1  # seconds publish may wait for a full send buffer to drain

E_HELLO_REQUIRED = "hello_required"
E_HELLO_TIMEOUT = "hello_timeout"
E_BAD_HELLO = "bad_hello"
E_BAD_REQUEST = "bad_request"
E_TOO_MANY_SUBSCRIPTIONS = "too_many_subscriptions"
E_TOO_MANY_CONNECTIONS = "too_many_connections"
E_RESERVED_TOPIC = "reserved_topic"
#: Not an error in the request: the broker dropped events queued for this
#: connection (its queue passed --queue-limit). The connection stays.
E_SLOW_CONSUMER = "slow_consumer"
