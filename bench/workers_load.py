"""The load side of ``bench.workers``: paired rounds against data planes of 1 and 2 workers.

``python -m bench.workers_load PLAN.json`` prints one JSON document. Each round drives every
data plane in turn (the order rotates by round) with ``conns`` keep-alive connections for
``seconds``, the same Claude Code request as ``bench.loadgen`` (whose raw client it uses: the
leanest client we have, so the load generator takes as little of the 2 cores as possible).

Per phase it records requests/s and the CPU seconds of: the data plane (the supervisor and all
its workers, found through /proc), the upstream, the control plane, this load generator, and
Redis (shared with whatever else uses it), and the whole machine (/proc/stat: what neighbours
took shows there). Paired rounds mean a noisy
neighbour hits both worker counts alike; the ratio is taken round by round.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.loadgen import CLK_TCK, closed_loop, cpu_seconds, summary
from bench.rawclient import Target, build_request


def descendants(pid: int) -> list[int]:
    """``pid`` and every process below it (the supervisor and its workers)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def pids_named(comm: str) -> list[int]:
    """Processes whose command name is ``comm`` (the local Redis: shared with anything else on
    the machine that uses it, so its CPU is an upper bound of what the benchmark cost it)."""
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm:
                    out.append(int(entry.name))
            except OSError:
                continue
    return out


def group_cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += cpu_seconds(pid)
        except OSError:  # a worker that exited meanwhile
            pass
    return total


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields) - idle) / CLK_TCK, sum(fields) / CLK_TCK


async def run(plan: dict[str, Any]) -> dict[str, Any]:
    from bench.upstream import render_body

    body = Path(plan["fixture"]).read_bytes()
    expected = render_body()
    host = "127.0.0.1"
    targets = {
        name: Target(
            name,
            host,
            dp["port"],
            build_request(host, dp["port"], body, ("authorization", f"Bearer {plan['key']}")),
            expected,
        )
        for name, dp in plan["dataplanes"].items()
    }
    pids = {name: descendants(dp["pid"]) for name, dp in plan["dataplanes"].items()}
    conns, seconds = plan["conns"], plan["seconds"]
    for target in targets.values():  # warm-up: pools, code paths, every worker
        await closed_loop(target, conns, plan["warmup"])
    names = list(targets)
    rounds: list[dict[str, Any]] = []
    for r in range(plan["rounds"]):
        order = names[r % len(names) :] + names[: r % len(names)]
        this: dict[str, Any] = {}
        for name in order:
            others = {
                "upstream": [plan["upstream_pid"]],
                "controlplane": [plan["controlplane_pid"]],
                "loadgen": [os.getpid()],
                "redis": pids_named("redis-server"),
            }
            before = {"dataplane": group_cpu(pids[name])}
            before.update({k: group_cpu(v) for k, v in others.items()})
            busy0, total0 = machine_busy()
            samples, elapsed = await closed_loop(targets[name], conns, seconds)
            busy1, total1 = machine_busy()
            after = {"dataplane": group_cpu(pids[name])}
            after.update({k: group_cpu(v) for k, v in others.items()})
            n = len(samples.ttlb)
            this[name] = {
                **summary(samples),
                "elapsed_s": elapsed,
                "rps": n / elapsed,
                "cpu_s": {k: after[k] - before[k] for k in before},
                "machine_busy_s": busy1 - busy0,
                "machine_total_s": total1 - total0,
            }
        rounds.append(this)
    return {"rounds": rounds, "conns": conns, "seconds": seconds, "pids": pids}


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    plan = json.loads(Path(args[0]).read_text())
    started = time.monotonic()
    result = asyncio.run(run(plan))
    result["wall_s"] = time.monotonic() - started
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
