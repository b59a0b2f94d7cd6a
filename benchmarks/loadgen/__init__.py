"""A load generator that is cheap per connection.

One ``asyncio.Protocol`` with ``__slots__`` per client on uvloop, a minimal
RFC 6455 client framing (:mod:`benchmarks.loadgen.wsframes`), spread over
several processes (:mod:`benchmarks.loadgen.controller`) and loopback source
addresses so neither the per-process file limit nor ephemeral ports run out.
"""

from benchmarks.loadgen.controller import ClientSpec, Collected, LoadGen, Target

__all__ = ["ClientSpec", "Collected", "LoadGen", "Target"]
