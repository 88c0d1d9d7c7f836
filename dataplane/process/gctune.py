"""The data plane's garbage-collector settings, applied once at process start (``run_loop``).

Why: CPython's cyclic collector walks every tracked container of the generations it collects.
After start-up a data plane holds well over 100,000 of them that live as long as the process
(modules, classes, protobuf descriptors, Hypercorn's and aiohttp's machinery), so each full
collection took ~40-50 ms with the event loop stopped: a pause that every open stream saw as a
late token (``make bench-streams``, 250 streams: two such pauses per ~30 s). And with hundreds of
streams open, their long-lived objects were walked again at every young collection.

* :func:`settle` collects once and then moves every object alive at that moment to the
  permanent generation (``gc.freeze``), which no collection walks again; objects made later
  (connections, requests, later snapshots) are collected as usual. ``run_loop`` settles before
  the loop starts, and :func:`settle_after` once more when the first snapshot is in: start-up
  itself imports and builds another ~95,000 long-lived objects (gRPC, aiohttp, the snapshot),
  which otherwise made every full collection under load a 70-80 ms pause. Requests already in
  flight by then are frozen too: they are still freed by reference counting; only a reference
  cycle among them would stay (once, at start-up, bounded by what was in flight).
* The young generation's threshold is raised from 700 to :data:`GEN0_THRESHOLD` allocations, so
  the collector runs less often per request; cyclic garbage waits a little longer (bounded by that
  many objects). Most of a request's objects are freed by reference counting anyway; what a young
  collection walks is the open streams' live objects (coroutines, tasks, contexts: ~170 per
  stream), again at every collection. Measured with 256 paced streams (``bench.sweep --levels
  256``, collector time over the run): 1,020 ms at 700, 317 ms at 7,000, 110 ms at 25,000, the
  longest single pause ~40 ms in all three (it grows with the streams open, not the threshold).

Only for a data-plane process: tests that run a data plane inside pytest's own process do not
call it (freezing pytest's objects would keep their cycles forever).
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Awaitable

GEN0_THRESHOLD = 25_000


def settle() -> None:
    """Collect, freeze what is alive, and set the thresholds (see the module docstring)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)


async def settle_after(ready: Awaitable[None]) -> None:
    """:func:`settle` once ``ready`` is done (or failed: the process serves anyway)."""
    with contextlib.suppress(Exception):
        await ready
    settle()
