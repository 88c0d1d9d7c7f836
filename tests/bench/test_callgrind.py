"""The parsing of callgrind's files and of ``callgrind_annotate``'s table (:mod:`bench.callgrind`;
the benchmark itself runs valgrind and is not run here)."""

from __future__ import annotations

import pytest

from bench.callgrind import callgrind_total, function_costs

# The head and tail of a real callgrind 3.19 file of a multi-threaded process: ``summary:`` was
# written before the last thread's costs and is short of ``totals:`` (and of the log's figure).
CALLGRIND_FILE = """\
# callgrind format
version: 1
creator: callgrind-3.19.0
pid: 8724
part: 1

positions: line
events: Ir
summary: 4085887034


ob=(10) /root/.pyenv/versions/3.11.7/lib/python3.11/lib-dynload/math.cpython-311-x86_64-linux-gnu.so
fl=(538) ???
fn=(10320) 0x0000000000003660
0 12

totals: 4085888501
"""

BUILD = "python-build.20260509073455.222/Python-3.11.7"
LIBPY = "[/root/.pyenv/versions/3.11.7/lib/libpython3.11.so.1.0]"
# callgrind_annotate --inclusive=no --auto=no, as printed (abridged; figures changed so that
# every merge shows in the sums).
ANNOTATE = f"""\
--------------------------------------------------------------------------------
Profile data file 'dp.callgrind' (creator: callgrind-3.19.0)
--------------------------------------------------------------------------------
Events recorded:  Ir

--------------------------------------------------------------------------------
Ir
--------------------------------------------------------------------------------
1,000,000 (100.0%)  PROGRAM TOTALS

--------------------------------------------------------------------------------
Ir                    file:function
--------------------------------------------------------------------------------
500,000 (50.00%)  {BUILD}/Python/ceval.c:_PyEval_EvalFrameDefault'2 {LIBPY}
200,000 (20.00%)  {BUILD}/Python/ceval.c:_PyEval_EvalFrameDefault {LIBPY}
 90,000 ( 9.00%)  {BUILD}/./Include/internal/pycore_frame.h:_PyEval_EvalFrameDefault'2
 80,000 ( 8.00%)  ???:0x0000000000230920 [/usr/lib/x86_64-linux-gnu/libcrypto.so.3]
 70,000 ( 7.00%)  ???:0x0000000000230920 [/usr/lib/x86_64-linux-gnu/libz.so.1]
 60,000 ( 6.00%)  {BUILD}/Objects/dictobject.c:_Py_dict_lookup {LIBPY}

--------------------------------------------------------------------------------
   12 ( 0.00%)  events annotated
"""


def test_the_total_is_the_totals_line_not_the_earlier_summary() -> None:
    assert callgrind_total(CALLGRIND_FILE) == 4085888501


def test_a_file_without_totals_is_refused_as_incomplete() -> None:
    truncated = CALLGRIND_FILE.partition("totals:")[0]
    with pytest.raises(ValueError, match="incomplete"):
        callgrind_total(truncated)


def test_function_costs_merge_recursion_levels_and_inlined_parts() -> None:
    costs = function_costs(ANNOTATE)
    assert costs == {
        "_PyEval_EvalFrameDefault": 790_000,
        "0x0000000000230920 [libcrypto.so.3]": 80_000,
        "0x0000000000230920 [libz.so.1]": 70_000,
        "_Py_dict_lookup": 60_000,
    }
    # The table only: neither the program's total above it nor the count below it.
    assert sum(costs.values()) == 1_000_000
