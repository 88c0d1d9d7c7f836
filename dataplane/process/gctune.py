"""The data plane's garbage-collector settings, applied once at process start (``run_loop``).

Why: CPython's cyclic collector walks every tracked container of the generations it collects.
After start-up a data plane holds well over 100,000 of them that live as long as the process
(modules, classes, protobuf descriptors, Hypercorn's and aiohttp's machinery), so each full
collection took ~40-50 ms with the event loop stopped: a pause that every open stream saw as a
late token (``make bench-streams``, 250 streams: two such pauses per ~30 s). And with hundreds of
streams open, their long-lived objects were walked again at every young collection.

* :func:`settle` collects once and then moves every object alive at that moment to the
  permanent generation (``gc.freeze``), which no collection walks again; objects made later
  (snapshots, connections, requests) are collected as usual.
* The young generation's threshold is raised from 700 to :data:`GEN0_THRESHOLD` allocations, so
  the collector runs less often per request; cyclic garbage waits a little longer (bounded by that
  many objects). Most of a request's objects are freed by reference counting anyway.

Only for a data-plane process: tests that run a data plane inside pytest's own process do not
call it (freezing pytest's objects would keep their cycles forever).
"""

from __future__ import annotations

import gc

GEN0_THRESHOLD = 7_000


def settle() -> None:
    """Collect, freeze what is alive, and set the thresholds (see the module docstring)."""
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GEN0_THRESHOLD, gen1, gen2)
