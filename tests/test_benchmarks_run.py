"""Every benchmark runs: `--quick` (tiny sizes) on SQLite, in a subprocess as a person
runs it, exits 0 and prints its figures beside their bars. A smoke run, not a measurement:
with --quick the bars are shown but not judged (start-up dominates tiny sizes)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parent.parent
NUMBER = r"[-+]?\d[\d,]*(?:\.\d+)?"

# script, extra arguments, what its output must show (one figure each)
BENCHMARKS = {
    "send_edition": (
        ["--sink", "python"],
        [
            rf"throughput ratio\s+{NUMBER}\s+app / baseline\s+>= 0\.90",
            rf"enqueue\s+{NUMBER} s for 200 deliveries\s+{NUMBER} s for 50\s+< 2 s",
            rf"peak RSS growth\s+{NUMBER} MB \(.* at 200\)\s+.* at 50; ratio {NUMBER}\s+< 20 MB",
            rf"2 workers, slow server\s+{NUMBER} msg/s; ratio {NUMBER}\s+1 worker {NUMBER} msg/s",
            r"checks\s+OK",
        ],
    ),
    "subscribe_load": (
        [],
        [
            rf"ratio app / Flask-SQLAlchemy view\s+{NUMBER}\s+{NUMBER} requests/s, JUDGED",
            rf"ratio app / raw-driver view\s+{NUMBER}",
            rf"CPU per request\s+app {NUMBER} ms",
            rf"worker\s+processed {NUMBER} requests",
        ],
    ),
    "feeds": (
        [],
        [
            rf"first pass, the app\s+{NUMBER} s .*feedparser\.parse alone {NUMBER} s",
            rf"first pass / feedparser alone\s+{NUMBER}x\s+<= 1\.5x",
            rf"second pass / first pass\s+{NUMBER} %\s+< 10 %",
        ],
    ),
    "profile_subscribe": (
        [],
        [
            rf"total\s+{NUMBER}\s+100\.0\s+{NUMBER}",
            rf"Bare one-INSERT view \(Flask-SQLAlchemy\), same way: CPU {NUMBER} ms",
            rf"Bare one-INSERT view \(raw DB driver\), same way: CPU {NUMBER} ms",
        ],
    ),
    "subscriber_pages": (
        [],
        [
            rf"list, unfiltered\s+{NUMBER} ms",
            rf"search page 'hansen' \(a common name\)\s+{NUMBER} ms",
            rf"search 'hansen' \(a common name\): service\s+{NUMBER} ms",
            rf"start_send\s+{NUMBER} deliveries in {NUMBER} s\s+.*< 2 s",
        ],
    ),
    "report_pages": (
        [],
        [
            rf"edition report\s+{NUMBER} ms\s+< 100 ms",
            rf"newsletter chart \(sources\)\s+{NUMBER} ms\s+< 100 ms",
            rf"archive Atom feed\s+{NUMBER} ms\s+< 100 ms",
        ],
    ),
    "webhooks": (
        [],
        [
            rf"bare loop of POSTs \(1 thread\):\s+{NUMBER} POST/s",
            rf"app \(claim, sign, POST, record\):\s+{NUMBER} events/s",
        ],
    ),
    "api_subscribe": (
        [],
        [rf"api / form: {NUMBER}"],
    ),
    "import_csv": (
        [],
        [
            rf"start-up of the CLI alone \(flask --help\): {NUMBER} s",
            rf"baseline: bare executemany INSERT of the rows: {NUMBER} s",
            rf"dry run \(--basis\), 50 rows\s+{NUMBER} s, CPU {NUMBER} s",
            rf"invite \(a mail per row\), 10 rows\s+{NUMBER} s",
        ],
    ),
}


def test_every_benchmark_is_covered():
    scripts = {p.stem for p in (ROOT / "benchmarks").glob("*.py")} - {"bare_app", "compare"}
    assert scripts == set(BENCHMARKS)


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_benchmark_quick_run(name, tmp_path):
    extra, figures = BENCHMARKS[name]
    if name in ("subscribe_load", "api_subscribe") and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env["TMPDIR"] = str(tmp_path)
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{name}.py"), "--quick", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for figure in figures:
        assert re.search(figure, done.stdout), (figure, done.stdout[-3000:])
    if "PASS" in done.stdout:
        assert "not judged (--quick)" in done.stdout
