"""CSV import of --rows subscribers through the real CLI, against the bar (< 10 s).

Generates a CSV of --rows rows (default 100 000: email, name, municipality, role), then
runs `flask --app wsgi subscribers import` as an operator does, each in a fresh
process on a freshly migrated database:

  dry run        --basis ... --dry-run (checks everything, writes nothing)
  basis          --basis ...            (enrol: subscribers, subscriptions, consent)
  basis again    the same file again    (changes nothing)
  invite         no --basis             (double opt-in: a rendered mail per row)

and prints each one's wall time and the peak RSS of the importing process, next to
the bar and two baselines measured in the same run: Python's csv module reading the
file and validating each address (the same validation function), and a bare
executemany INSERT of the same rows into a table like `subscribers`. The process's
fixed start-up (importing Flask and the app) is printed too.

    .venv/bin/python benchmarks/import_csv.py                          # SQLite
    .venv/bin/python benchmarks/import_csv.py --rows 20000             # memory is flat
    .venv/bin/python benchmarks/import_csv.py --database postgresql  # bench_import
    .venv/bin/python benchmarks/import_csv.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/test_f     # PostgreSQL

With --database postgresql the database bench_import (--pg-database) is re-created for
each run and dropped at the end; with --database-url every table in that database is
DROPPED before each run.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

from harness.app import compile_package, newsletters_env
from harness.common import ROOT, add_quick_argument, apply_quick
from harness.databases import (
    add_database_arguments,
    drop_all_tables,
    drop_databases,
    fresh_database,
)
from harness.measure import run_child
from harness.report import Table

sys.path.insert(0, str(ROOT))

BAR_SECONDS = 10.0
# Memory bounded by a constant: the importing process's peak RSS over the CLI doing
# nothing (`flask --help`), whatever the file's size.
BAR_MEMORY_MB = 64
SECRET = "bench-secret-key-0123456789abcdef"  # noqa: S105 - a throwaway database
BASIS = "Medarbejder i en kommune (benchmark)"


def write_csv(path: Path, rows: int) -> None:
    from newsletters.subscriptions.municipalities import MUNICIPALITIES

    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["email", "name", "municipality", "role"])
        for n in range(rows):
            town = MUNICIPALITIES[n % len(MUNICIPALITIES)]
            writer.writerow(
                [f"person{n:07d}@kommune{n % 98}.dk", f"Person {n} Ærø", town, "medarbejder"]
            )


class Database:
    """A fresh, migrated and seeded database for each run: an SQLite file, the bench_*
    database re-created (--database postgresql), or the given URL with its tables dropped."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.url = args.database_url
        self.tmp = tmp
        self.runs = 0

    def fresh(self) -> str:
        self.runs += 1
        if self.url is None:
            url = fresh_database(
                self.args, self.tmp, self.args.pg_database, f"bench{self.runs}.db"
            ).url
        else:
            url = self.url
            drop_all_tables(url)
        for command in (["db", "upgrade"], ["seed"]):
            flask(url, self.tmp, *command)
        return url


def environment(url: str, tmp: Path) -> dict[str, str]:
    settings = {
        "SECRET_KEY": SECRET,
        "SQLALCHEMY_DATABASE_URI": url,
        "WORKER_IN_PROCESS": "false",
    }
    return newsletters_env(settings, tmp)


def flask(url: str, tmp: Path, *args: str) -> tuple[float, float, float, str]:
    """Run `flask --app wsgi ARGS`; (seconds, CPU seconds, peak RSS in MB, last line of
    its output). CPU time is the process's own (user + system): on a shared machine the
    wall time also holds the time other processes had the cores."""
    run = run_child([sys.executable, "-m", "flask", "--app", "wsgi", *args], environment(url, tmp))
    if run.returncode != 0:
        raise SystemExit(f"flask {' '.join(args)} failed:\n{run.stdout}\n{run.stderr}")
    lines = run.stdout.strip().splitlines()
    return run.seconds, run.cpu, run.maxrss_mb, lines[-1] if lines else ""


def baseline_read_and_validate(path: Path) -> float:
    """Python's csv module reading the file and validating every address."""
    from newsletters.mailing.addresses import normalise_email

    normalise_email.cache_clear()
    started = time.perf_counter()
    with path.open(newline="", encoding="utf-8") as source:
        reader = csv.reader(source)
        next(reader)
        for row in reader:
            normalise_email(row[0])
    return time.perf_counter() - started


def baseline_bare_insert(path: Path, url: str | None, tmp: Path) -> float:
    """One executemany INSERT of the rows into a bare table like `subscribers`."""
    with path.open(newline="", encoding="utf-8") as source:
        reader = csv.reader(source)
        next(reader)
        rows = [tuple(row) for row in reader]
    ddl = (
        "CREATE TABLE bench_bare (id {serial} PRIMARY KEY, email VARCHAR(320) UNIQUE,"
        " name VARCHAR(200), municipality VARCHAR(100), role VARCHAR(100))"
    )
    if url is None:
        import sqlite3

        connection = sqlite3.connect(tmp / "bare.db")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        connection.execute(ddl.format(serial="INTEGER"))
        started = time.perf_counter()
        connection.executemany(
            "INSERT INTO bench_bare (email, name, municipality, role) VALUES (?, ?, ?, ?)", rows
        )
        connection.commit()
        seconds = time.perf_counter() - started
        connection.close()
        return seconds
    import psycopg

    with psycopg.connect(url) as connection:
        connection.execute("DROP TABLE IF EXISTS bench_bare")
        connection.execute(ddl.format(serial="SERIAL"))
        connection.commit()
        started = time.perf_counter()
        with connection.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO bench_bare (email, name, municipality, role) VALUES (%s, %s, %s, %s)",
                rows,
            )
        connection.commit()
        seconds = time.perf_counter() - started
        connection.execute("DROP TABLE bench_bare")
        connection.commit()
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rows", "--subscribers", dest="rows", type=int, default=100_000, help="rows [100000]"
    )
    add_database_arguments(parser, pg_database="bench_import")
    parser.add_argument(
        "--database-url", help="PostgreSQL URL (its tables are dropped); default SQLite"
    )
    parser.add_argument(
        "--invite-rows",
        type=int,
        help="rows of the invite run (default --rows; each row renders a whole mail)",
    )
    add_quick_argument(parser, "--rows 50 --invite-rows 10")
    args = parser.parse_args()
    apply_quick(args, parser, rows=50, invite_rows=10)
    try:
        run(args)
    finally:
        drop_databases(args, [args.pg_database])


def run(args: argparse.Namespace) -> None:
    compile_package()
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
    os.environ["NEWSLETTERS_INSTANCE_PATH"] = str(tmp / "instance")
    database = Database(args, tmp)
    path = tmp / "subscribers.csv"
    write_csv(path, args.rows)
    postgres = args.database_url or args.database == "postgresql"
    label = "PostgreSQL" if postgres else "SQLite"
    print(f"{args.rows} rows ({path.stat().st_size / 1e6:.1f} MB), {label}, bar {BAR_SECONDS} s")

    start_seconds, start_cpu, start_rss, _ = flask(database.fresh(), tmp, "--help")
    print(
        f"  start-up of the CLI alone (flask --help): {start_seconds:.2f} s"
        f" (CPU {start_cpu:.2f} s), {start_rss:.0f} MB"
    )
    read = baseline_read_and_validate(path)
    print(f"  baseline: csv module + address validation: {read:.2f} s")
    bare_url = args.database_url
    if bare_url is None and args.database == "postgresql":
        bare_url = fresh_database(args, tmp, args.pg_database, "").url
    bare = baseline_bare_insert(path, bare_url, tmp)
    print(f"  baseline: bare executemany INSERT of the rows: {bare:.2f} s")

    results = []
    url = database.fresh()
    base = ["subscribers", "import", str(path), "--newsletter", "bestyrelse", "--basis", BASIS]
    results.append(("dry run (--basis)", args.rows, *flask(url, tmp, *base, "--dry-run")))
    results.append(("basis", args.rows, *flask(url, tmp, *base)))
    results.append(("basis again (no change)", args.rows, *flask(url, tmp, *base)))
    invite_rows = args.invite_rows or args.rows
    invite_path = path
    if invite_rows != args.rows:
        invite_path = tmp / "invite.csv"
        write_csv(invite_path, invite_rows)
    url = database.fresh()
    invite = ["subscribers", "import", str(invite_path), "--newsletter", "momentum"]
    results.append(("invite (a mail per row)", invite_rows, *flask(url, tmp, *invite)))

    table = Table(
        f"  CSV import ({label}): wall s, the process's CPU s, rows/s, peak RSS",
        judged=not args.quick,
    )
    baselines = [f"csv + validation {read:.2f} s", f"bare INSERT {bare:.2f} s"]
    baselines += [f"bare INSERT {bare:.2f} s", f"CLI start-up {start_seconds:.2f} s"]
    for (name, rows, seconds, cpu, rss, _last), baseline in zip(results, baselines, strict=True):
        table.add(
            f"{name}, {rows} rows",
            f"{seconds:.2f} s, CPU {cpu:.2f} s, {rows / seconds:.0f} rows/s, {rss:.0f} MB",
            baseline,
            f"< {BAR_SECONDS:g} s",
            seconds < BAR_SECONDS,
        )
    peak = max(rss for _n, _r, _s, _c, rss, _l in results)
    table.add(
        "memory: peak RSS over the CLI's start-up",
        f"{peak - start_rss:.0f} MB (peak {peak:.0f} MB)",
        f"CLI start-up {start_rss:.0f} MB",
        f"< {BAR_MEMORY_MB} MB",
        peak - start_rss < BAR_MEMORY_MB,
    )
    table.print()
    for name, _rows, _seconds, _cpu, _rss, last in results:
        print(f"  {name}: {last}")


if __name__ == "__main__":
    main()
