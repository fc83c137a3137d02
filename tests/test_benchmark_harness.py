"""benchmarks/harness: the pieces that decide what a benchmark prints and what it may
touch (fast; the benchmarks themselves run in tests/test_benchmarks_run.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from harness.common import BenchmarkError, add_quick_argument, apply_quick  # noqa: E402
from harness.databases import fresh_postgres_database  # noqa: E402
from harness.report import Table  # noqa: E402


def test_table_puts_each_figure_beside_its_baseline_and_bar():
    table = Table("figures")
    table.add("throughput ratio", "0.912", "app / baseline", ">= 0.80", True)
    table.add("enqueue", "2.500 s", "", "< 2 s", False)
    table.add("app", "1200.0 msg/s", "1300.0 msg/s")
    lines = table.lines()
    assert lines[0] == "figures"
    assert lines[1].split() == ["figure", "this", "run", "baseline", "bar", "verdict"]
    ratio = next(line for line in lines if "throughput ratio" in line)
    assert ratio.split()[-3:] == [">=", "0.80", "PASS"]
    assert next(line for line in lines if "enqueue" in line).endswith("FAIL")
    assert next(line for line in lines if line.strip().startswith("app")).endswith("msg/s")
    assert table.failed == ["enqueue"]


def test_a_quick_table_shows_the_bars_without_judging_them():
    table = Table("figures", judged=False)
    table.add("enqueue", "2.500 s", "", "< 2 s", False)
    assert table.lines()[-1].endswith("not judged (--quick)")
    assert table.failed == []


def test_quick_shrinks_only_the_sizes_left_at_their_default():
    parser = argparse.ArgumentParser()
    parser.add_argument("--recipients", type=int, default=100_000)
    parser.add_argument("--small", type=int, default=10_000)
    add_quick_argument(parser, "tiny")
    args = parser.parse_args(["--quick", "--recipients", "500"])
    apply_quick(args, parser, recipients=200, small=50)
    assert (args.recipients, args.small) == (500, 50)
    args = parser.parse_args([])
    apply_quick(args, parser, recipients=200, small=50)
    assert (args.recipients, args.small) == (100_000, 10_000)


@pytest.mark.parametrize(
    "name", ["test", "postgres", "template1", "bench", "mydb", "bench_x; DROP", "BENCH_X", ""]
)
def test_only_bench_databases_are_ever_dropped(name):
    # Refused before any connection is made: the server address below does not exist.
    with pytest.raises(BenchmarkError, match="refusing"):
        fresh_postgres_database("postgresql://nobody@127.0.0.1:1", name)
