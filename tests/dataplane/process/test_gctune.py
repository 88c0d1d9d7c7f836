"""A data-plane process freezes its start-up objects and collects its young generation less often
(dataplane.process.gctune); checked in a child process, since freezing pytest's own objects
would keep their cycles for the rest of the run."""

from __future__ import annotations

import json
import subprocess
import sys

from dataplane.process.gctune import GEN0_THRESHOLD

_CHILD = """
import gc, json
from dataplane.process.server import run_loop

async def main():
    return {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()}

print(json.dumps({"before": gc.get_freeze_count(), "during": run_loop(main())}))
"""


def test_run_loop_freezes_start_up_objects_and_raises_the_young_threshold() -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    seen = json.loads(out.stdout)
    assert seen["before"] == 0
    # Every module the data plane imported is in the permanent generation, never walked again.
    assert seen["during"]["frozen"] > 50_000
    assert seen["during"]["threshold"][0] == GEN0_THRESHOLD
