"""Reading callgrind's output for :mod:`bench.instructions`: a file's instruction total, the self
cost of each function (through ``callgrind_annotate``), and two kept runs compared function by
function (``python -m bench.instructions --diff OLD NEW``)."""

from __future__ import annotations

import json
import re
import subprocess
from collections import defaultdict
from pathlib import Path

# The file's grand total. Not ``summary:``, which callgrind writes before the last thread's
# final costs are in (seen 1,467 instructions short of ``totals:`` and of the log's figure).
TOTALS = re.compile(r"^totals:\s+(\d+)", re.MULTILINE)
# A line of callgrind_annotate's function table: "1,234 (12.34%)  file:function [object]".
ANNOTATE_LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.+?)\s*$")


def callgrind_total(out_text: str) -> int:
    """The instruction total of a callgrind output file; ValueError if the file has none (the
    process did not finish writing it)."""
    m = TOTALS.search(out_text)
    if m is None:
        raise ValueError("callgrind output has no totals line: incomplete")
    return int(m.group(1))


def function_costs(annotate_output: str) -> dict[str, int]:
    """Self instructions per function from the table of ``callgrind_annotate --inclusive=no``
    (the lines after its ``file:function`` header, up to the first blank line), keyed by
    function name. One function is one key: its recursion levels (``fn'2``) and the parts inlined
    from headers (listed under the header's file, without the object) are merged, and the source
    path (which carries the interpreter's build directory) is dropped. Unnamed code
    (``???:0x...``) keeps its object's name, since addresses repeat across libraries."""
    costs: dict[str, int] = defaultdict(int)
    in_table = False
    for line in annotate_output.splitlines():
        if not in_table:
            in_table = line.rstrip().endswith("file:function")
            continue
        if not line.strip():
            break
        m = ANNOTATE_LINE.match(line)
        if m is None:
            continue
        where, _, obj = m.group(2).partition(" [")
        fn = re.sub(r"'\d+$", "", where.rpartition(":")[2])
        if fn.startswith("0x") and obj:
            fn = f"{fn} [{Path(obj.rstrip(']')).name}]"
        costs[fn] += int(m.group(1).replace(",", ""))
    return dict(costs)


def annotate(callgrind_file: Path) -> dict[str, int]:
    """Self instructions per function of one callgrind file (every function: threshold 100 %)."""
    cmd = ["callgrind_annotate", "--inclusive=no", "--threshold=100", "--auto=no"]
    cmd.append(str(callgrind_file))
    return function_costs(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def diff(old_dir: Path, new_dir: Path, top: int) -> int:
    """Per-request self cost by function, old against new (two ``--keep`` directories)."""
    per_fn = []
    for d in (old_dir, new_dir):
        saved = json.loads((d / "result.json").read_text())
        acc: dict[str, float] = defaultdict(float)
        runs = saved["dataplane"]
        for small, big in runs:
            costs = [annotate(d / Path(c["out_file"]).name) for c in (small, big)]
            for fn in costs[0].keys() | costs[1].keys():
                acc[fn] += (costs[1].get(fn, 0) - costs[0].get(fn, 0)) / (big["n"] - small["n"])
        per_fn.append({fn: v / len(runs) for fn, v in acc.items()})
    old, new = per_fn
    rows = sorted(old.keys() | new.keys(), key=lambda f: -abs(new.get(f, 0) - old.get(f, 0)))
    print(f"Self instructions per request by function: old {old_dir} -> new {new_dir}")
    print(f"  {'old':>10} {'new':>10} {'new-old':>10}  function [object]")
    for fn in rows[:top]:
        o, n = old.get(fn, 0.0), new.get(fn, 0.0)
        print(f"  {o:>10,.0f} {n:>10,.0f} {n - o:>+10,.0f}  {fn}")
    print(f"  {sum(old.values()):>10,.0f} {sum(new.values()):>10,.0f}"
          f" {sum(new.values()) - sum(old.values()):>+10,.0f}  all functions")  # fmt: skip
    return 0
