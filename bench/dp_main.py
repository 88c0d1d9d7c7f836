"""Run one data plane for the benchmark, optionally under cProfile.

``python -m bench.dp_main --ready-file F --control-plane H:P --state-dir D [--profile OUT]
[--otlp-endpoint URL] [--redis URL --redis-prefix P]``
(the data-plane token in ``TOLLGATE_DATAPLANE_TOKEN``)

Like ``gwctl dataplane serve`` (it uses :class:`dataplane.process.server.DataPlane` the same way) but
listens on port 0 and, once the first snapshot is in, writes ``{"port": …, "pid": …}`` to the
ready file. SIGTERM drains and exits; with ``--profile`` the cProfile stats are dumped to OUT on
the way out (so the profile covers exactly the data plane's life, start-up included); with
``--sample OUT`` the stdlib sampling profiler (:mod:`bench.sampler`) runs instead.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import os
from pathlib import Path

from bench.child import announce, until_signalled
from bench.sampler import Sampler
from dataplane.process import gctune
from dataplane.process.server import DataPlane, Settings, run_loop


async def serve(args: argparse.Namespace) -> None:
    dp = DataPlane(
        Settings(
            listen="127.0.0.1:0",
            control_plane=args.control_plane,
            token=os.environ["TOLLGATE_DATAPLANE_TOKEN"],
            state_dir=args.state_dir,
            otlp_endpoint=args.otlp_endpoint,
            redis_url=args.redis,
            redis_prefix=args.redis_prefix,
        )
    )
    await dp.start()
    await dp.wait_for_snapshot(timeout=20)
    gctune.settle()  # as `gwctl dataplane serve` does once the snapshot is in
    announce(args.ready_file, json.dumps({"port": dp.port, "pid": os.getpid()}))
    await until_signalled()
    await dp.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--ready-file", type=Path, required=True)
    parser.add_argument("--control-plane", required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--otlp-endpoint", default="", help="trace to this OTLP/HTTP receiver")
    parser.add_argument("--redis", default="", help="shared counters in this Redis")
    parser.add_argument("--redis-prefix", default="tollgate:", help="key prefix in Redis")
    parser.add_argument("--profile", type=Path, help="cProfile stats to this file")
    parser.add_argument("--sample", type=Path, help="sampling-profiler results to this file")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.sample is not None:
        sampler = Sampler()
        sampler.start()
        try:
            run_loop(serve(args))
        finally:
            sampler.stop()
            sampler.dump(args.sample)
        return
    if args.profile is None:
        run_loop(serve(args))
        return
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        run_loop(serve(args))
    finally:
        profiler.disable()
        profiler.dump_stats(str(args.profile))


if __name__ == "__main__":
    main()
