"""The broker without batching, for measuring what batching buys.

    python bench/unbatched_broker.py bus --socket PATH [decnet bus options]

Runs ``decnet`` (same options) with ``BrokerConfig.batch_writes`` off: every
PUB is routed and written out to its subscribers before the next one is
decoded, so each delivery is its own ``writelines`` (its own ``write`` system
call), as a broker that does not batch would. Everything else is the real
broker's, except that it never holds a publisher. bench/capacity.py runs it
with ``--unbatched``. Not for production: it exists to be compared.
"""

from __future__ import annotations

import dataclasses
import sys

from decnet.bus import worker

_Broker = worker.Broker


def unbatched(config, **kwargs):
    return _Broker(dataclasses.replace(config, batch_writes=False), **kwargs)


worker.Broker = unbatched  # the CLI has no option for it: it is not for production

if __name__ == "__main__":
    from decnet.cli import main

    sys.exit(main())
