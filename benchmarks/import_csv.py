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
    .venv/bin/python benchmarks/import_csv.py \\
        --database-url postgresql://postgres@127.0.0.1:5432/test_f     # PostgreSQL

With --database-url every table in that database is DROPPED before each run.
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BAR_SECONDS = 10.0
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
    """A fresh, migrated and seeded database for each run (SQLite file or the given URL)."""

    def __init__(self, url: str | None, tmp: Path) -> None:
        self.url = url
        self.tmp = tmp
        self.runs = 0

    def fresh(self) -> str:
        self.runs += 1
        if self.url is None:
            url = f"sqlite:///{self.tmp / f'bench{self.runs}.db'}"
        else:
            from sqlalchemy import MetaData, create_engine

            url = self.url
            engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
            with engine.begin() as connection:
                existing = MetaData()
                existing.reflect(connection)
                existing.drop_all(connection)
            engine.dispose()
        for command in (["db", "upgrade"], ["seed"]):
            flask(url, self.tmp, *command)
        return url


def environment(url: str, tmp: Path) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")},
        "NEWSLETTERS_SECRET_KEY": SECRET,
        "NEWSLETTERS_INSTANCE_PATH": str(tmp / "instance"),
        "NEWSLETTERS_SQLALCHEMY_DATABASE_URI": url,
        "NEWSLETTERS_WORKER_IN_PROCESS": "false",
    }


def flask(url: str, tmp: Path, *args: str) -> tuple[float, float, float, str]:
    """Run `flask --app wsgi ARGS`; (seconds, CPU seconds, peak RSS in MB, last line of
    its output). CPU time is the process's own (user + system): on a shared machine the
    wall time also holds the time other processes had the cores."""
    started = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "flask", "--app", "wsgi", *args],
        cwd=ROOT,
        env=environment(url, tmp),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    # wait4 gives this child's own rusage (RUSAGE_CHILDREN would be the maximum of all).
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    out = process.stdout.read().decode()
    err = process.stderr.read().decode()
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"flask {' '.join(args)} failed:\n{out}\n{err}")
    lines = out.strip().splitlines()
    cpu = usage.ru_utime + usage.ru_stime
    return seconds, cpu, usage.ru_maxrss / 1024, lines[-1] if lines else ""


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
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument(
        "--database-url", help="PostgreSQL URL (its tables are dropped); default SQLite"
    )
    parser.add_argument(
        "--invite-rows",
        type=int,
        help="rows of the invite run (default --rows; each row renders a whole mail)",
    )
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="bench-import-"))
    os.environ["NEWSLETTERS_INSTANCE_PATH"] = str(tmp / "instance")
    database = Database(args.database_url, tmp)
    path = tmp / "subscribers.csv"
    write_csv(path, args.rows)
    label = "PostgreSQL" if args.database_url else "SQLite"
    print(f"{args.rows} rows ({path.stat().st_size / 1e6:.1f} MB), {label}, bar {BAR_SECONDS} s")

    start_seconds, start_cpu, start_rss, _ = flask(database.fresh(), tmp, "--help")
    print(
        f"  start-up of the CLI alone (flask --help): {start_seconds:.2f} s"
        f" (CPU {start_cpu:.2f} s), {start_rss:.0f} MB"
    )
    read = baseline_read_and_validate(path)
    print(f"  baseline: csv module + address validation: {read:.2f} s")
    bare = baseline_bare_insert(path, args.database_url, tmp)
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

    print(f"  {'run':<26}{'rows':>8}{'seconds':>9}{'CPU s':>7}{'rows/s':>9}{'peak RSS':>10}  bar")
    for name, rows, seconds, cpu, rss, last in results:
        verdict = "ok" if seconds < BAR_SECONDS else "over"
        print(
            f"  {name:<26}{rows:>8}{seconds:>9.2f}{cpu:>7.2f}{rows / seconds:>9.0f}"
            f"{rss:>8.0f} MB  {verdict}"
        )
        print(f"      {last}")


if __name__ == "__main__":
    main()
