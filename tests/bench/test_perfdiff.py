"""The reading of ``perf report``'s table and the per-request difference (:mod:`bench.perfdiff`;
the benchmark itself runs perf and is not run here)."""

from __future__ import annotations

from bench.perfdiff import parse_report, render

# `perf report --stdio --no-children --sort comm,dso,sym -F overhead,sample,comm,dso,sym`, as
# printed by perf 6.1 (abridged; one symbol split over two rows, as a merged report prints it).
REPORT = """\
# To display the perf.data header info, please use --header/--header-only options.
#
# Samples: 24K of event 'cpu-clock'
# Event count (approx.): 6061500000
#
# Overhead       Samples  Command       Shared Object                                 Symbol
# ........  ............  ............  ............................................  ......
#
    25.80%          6254  python        libpython3.11.so.1.0                          [.] _PyEval_EvalFrameDefault
     2.61%           632  python        /work/.venv/lib/python3.11/site-packages/msgspec/_core.cpython-311-x86_64-linux-gnu.so  [.] json_skip_string
     0.02%             5  event_engine  [kernel.kallsyms]                             [k] finish_task_switch.isra.0
     0.01%             2  event_engine  cygrpc.cpython-311-x86_64-linux-gnu.so        [.] 0x0000000000566407
     0.01%             2  python        libpython3.11.so.1.0                          [.] _PyEval_EvalFrameDefault
"""


def test_rows_are_read_per_thread_object_and_symbol() -> None:
    counts = parse_report(REPORT)
    assert counts[("python", "libpython3.11.so.1.0", "_PyEval_EvalFrameDefault")] == 6256
    # A path is cut to the shared object's file name; a kernel symbol counts like any other.
    assert counts[("python", "_core.cpython-311-x86_64-linux-gnu.so", "json_skip_string")] == 632
    assert counts[("event_engine", "[kernel.kallsyms]", "finish_task_switch.isra.0")] == 5
    assert sum(counts.values()) == 6254 + 632 + 5 + 2 + 2  # the header lines are no rows


def test_the_difference_is_per_request_and_largest_first() -> None:
    hz = 1000  # a sample is 1 ms of CPU
    gateway = {
        ("python", "libpython3.11.so.1.0", "_PyEval_EvalFrameDefault"): 300,
        ("python", "_core.so", "json_skip_string"): 40,
        ("python", "[kernel.kallsyms]", "do_syscall_64"): 10,
    }
    floor = {
        ("python", "libpython3.11.so.1.0", "_PyEval_EvalFrameDefault"): 400,
        ("python", "[kernel.kallsyms]", "do_syscall_64"): 40,
    }
    # 1,000 gateway requests and 2,000 floor ones: 300 samples = 300 µs a request there, the
    # floor's 400 = 200 µs a request.
    text = render(gateway, 1000, floor, 2000, hz)
    lines = text.splitlines()
    assert lines[0].startswith(
        "data plane: 1000 requests, 350 µs of CPU each; floor: 2000 requests"
    )
    assert "220 µs each; difference +130 µs (1.59x)" in lines[0]
    by_symbol = lines[lines.index(next(line for line in lines if "by symbol" in line)) + 1 :]
    assert by_symbol[0].split() == [
        "+100.0",
        "300.0",
        "200.0",
        "_PyEval_EvalFrameDefault",
        "(libpython3.11.so.1.0)",
    ]
    assert by_symbol[1].split()[:4] == ["+40.0", "40.0", "0.0", "json_skip_string"]
    assert by_symbol[2].split()[:4] == ["-10.0", "10.0", "20.0", "do_syscall_64"]
    assert "+130.0    350.0    220.0  python" in text  # by thread
