"""Feeds: the app's fetch of 200 feeds x 50 items on loopback against feedparser alone.

The bar (PRODUCT.md, "Performance bars"): *feeds: 200 feeds x 50 items served on
loopback: first pass within 1.5x the time feedparser alone needs to parse the same
documents (rss2email, measured the same way: 9.8x); an unchanged second pass (304s)
< 10 % of the first.*

    .venv/bin/python benchmarks/feeds.py [--database sqlite|postgresql] [--feeds 200]
                                         [--items 50] [--repeat 3] [--json FILE] [--quick]
                                         [--filters]

Both sides are measured the same way: --repeat rounds, each the baseline then the app on
a fresh database, the best of each side taken (the machine is shared; the best round is
the one least disturbed). One round:

1. writes --feeds documents of --items items each (RSS 2.0 and every fifth one Atom;
   Danish titles, ~600-character HTML summaries with links and markup, GUIDs, dates)
   into a temp dir, and serves them from a separate process
   (`python -m tests.support.feedserver`, a ThreadingHTTPServer that sends ETag and
   Last-Modified and answers conditional GETs with 304);
2. the baseline: the same documents read into memory first (not timed), then
   `feedparser.parse(bytes)` on each, one after the other, with feedparser's defaults;
3. a fresh database (SQLite file in the temp dir, or the PostgreSQL database
   `bench_feeds`, dropped and created, dropped again at the end), migrated and seeded,
   with the feeds attached to `kl-nyheder` (`services.add_feed`, not timed; the parser
   processes started, as in a running worker);
4. the first pass: `services.fetch_feeds()`, what `flask feeds fetch` runs: HTTP
   (conditional GET, size cap, timeout, FEEDS_CONCURRENCY threads), feedparser (in
   FEEDS_PARSE_PROCESSES processes), nh3, de-duplication and the bulk upserts, one
   transaction per feed;
5. the second pass, nothing changed: the same call, every feed answers 304.

--filters: every feed gets a filter before the first pass (not timed): 10 include and 10
exclude words (Danish, some with æøå; one of each in quotation marks, matching whole
words only, so both ways of matching are judged). No categories: the documents have
none, so a category would leave out every item. The include words are common, the
exclude words pick out a part, and each item is judged as it is stored.

Checks: the first pass stored feeds x items items and no feed had an error; the second
pass got 304 from every feed and stored nothing. Prints the figures and PASS/FAIL per
bar; exit status 0 PASS, 1 FAIL, 2 could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from xml.sax.saxutils import escape

from harness.app import in_process_app
from harness.common import ROOT, add_quick_argument, apply_quick, free_port, quick_note
from harness.databases import add_database_arguments, drop_databases, fresh_database
from harness.report import Table

sys.path.insert(0, str(ROOT))

BAR_FIRST = 1.5  # first pass / feedparser alone
BAR_SECOND = 0.10  # second pass / first pass

WORDS = [
    "kommunerne",
    "økonomi",
    "beskæftigelse",
    "ældrepleje",
    "skoler",
    "børn",
    "klima",
    "borgmester",
    "byråd",
    "regionerne",
    "aftale",
    "velfærd",
    "sundhed",
    "digitalisering",
    "affald",
    "trafik",
    "budget",
    "analyse",
    "København",
    "Århus",
    "Odense",
    "Aalborg",
    "Esbjerg",
    "fællesskab",
    "løsning",
    "udfordring",
]


# The filter of every feed with --filters: common words in, a few out.
FILTER_INCLUDE = [
    "kommunerne", "økonomi", "ældrepleje", "børn", "klima", "byråd", "velfærd",
    "sundhed", "budget", '"analyse"',
]  # fmt: skip
FILTER_EXCLUDE = [
    "affald", "trafik", "københavn", "sport", "lotteri", "vejr", "quiz",
    "horoskop", "reklame", '"annonce"',
]  # fmt: skip


def _text(seed: int, words: int) -> str:
    return " ".join(WORDS[(seed * 7 + n * 13) % len(WORDS)] for n in range(words))


def write_documents(directory: Path, feeds: int, items: int) -> list[Path]:
    start = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    paths = []
    for f in range(feeds):
        atom = f % 5 == 4
        entries = []
        for i in range(items):
            when = start - timedelta(minutes=37 * i + f)
            title = escape(f"{_text(f + i, 6).capitalize()} ({f}-{i})")
            summary = escape(
                f"<p>{_text(f * i, 40)} <strong>{_text(i, 5)}</strong> "
                f'<a href="/artikel/{f}/{i}/baggrund">baggrund</a>.</p>'
                f"<p>{_text(f + 3 * i, 30)}</p>"
            )
            link = f"https://www.kl.dk/nyheder/{f}/{i}"
            if atom:
                entries.append(
                    f"<entry><title>{title}</title><link href='{link}'/>"
                    f"<id>tag:kl.dk,2026:{f}-{i}</id><updated>{when.isoformat()}</updated>"
                    f"<summary type='html'>{summary}</summary></entry>"
                )
            else:
                entries.append(
                    f"<item><title>{title}</title><link>{link}</link>"
                    f"<guid isPermaLink='false'>kl-{f}-{i}</guid>"
                    f"<pubDate>{format_datetime(when)}</pubDate>"
                    f"<description>{summary}</description></item>"
                )
        if atom:
            body = (
                "<?xml version='1.0' encoding='utf-8'?>"
                "<feed xmlns='http://www.w3.org/2005/Atom'>"
                f"<title>KL feed {f}</title><id>urn:kl:{f}</id>"
                f"<updated>{start.isoformat()}</updated>" + "".join(entries) + "</feed>"
            )
            path = directory / f"feed{f:03d}.atom"
        else:
            body = (
                "<?xml version='1.0' encoding='utf-8'?><rss version='2.0'><channel>"
                f"<title>KL feed {f}</title><link>https://www.kl.dk/</link>"
                "<description>Nyheder</description>" + "".join(entries) + "</channel></rss>"
            )
            path = directory / f"feed{f:03d}.xml"
        path.write_text(body, encoding="utf-8")
        paths.append(path)
    return paths


def start_server(directory: Path) -> tuple[subprocess.Popen, int]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.feedserver", str(directory), str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline()
    if "serving" not in line:
        process.kill()
        raise RuntimeError(f"the feed server did not start: {line!r}")
    return process, port


def baseline_once(documents: list[bytes]) -> float:
    import feedparser

    started = time.perf_counter()
    for document in documents:
        feedparser.parse(document)
    return time.perf_counter() - started


def app_once(args, paths: list[Path], port: int, url: str) -> dict:
    """One round of the app on a fresh database: the first pass, then the second."""
    from newsletters.extensions import db
    from newsletters.feeds import services
    from newsletters.feeds.models import FeedItem

    app = in_process_app(
        {
            "SECRET_KEY": "benchmark-secret-key-0123456789",
            "SQLALCHEMY_DATABASE_URI": url,
            # The feeds are served on loopback, which the fetcher refuses by default.
            "FEEDS_ALLOW_PRIVATE": True,
        }
    )
    with app.app_context():
        for path in paths:
            feed = services.add_feed("kl-nyheder", f"http://127.0.0.1:{port}/{path.name}")
            if args.filters:
                services.set_filter(feed.id, include=FILTER_INCLUDE, exclude=FILTER_EXCLUDE)
        if app.config["FEEDS_PARSE_PROCESSES"]:
            # Started before the clock, as in a running worker (spawn takes ~0.5 s).
            services.parsing_pool(app.config["FEEDS_PARSE_PROCESSES"]).submit(int).result()

        started = time.perf_counter()
        first = services.fetch_feeds()
        first_seconds = time.perf_counter() - started
        stored = db.session.scalar(db.select(db.func.count(FeedItem.id)))
        filtered = db.session.scalar(
            db.select(db.func.count(FeedItem.id)).where(FeedItem.filtered_out.is_(True))
        )

        started = time.perf_counter()
        second = services.fetch_feeds()
        second_seconds = time.perf_counter() - started
        stored_after = db.session.scalar(db.select(db.func.count(FeedItem.id)))
        db.session.remove()
        db.engine.dispose()

    expected = args.feeds * args.items
    problems = []
    errors = [o for o in first + second if o.error]
    if errors:
        problems.append(f"{len(errors)} fetch error(s), e.g. {errors[0].describe()}")
    if stored != expected:
        problems.append(f"first pass stored {stored} items, expected {expected}")
    if stored_after != stored or any(o.status != 304 for o in second):
        problems.append("the second pass was not all 304 / changed the items")
    return {
        "first": first_seconds,
        "second": second_seconds,
        "filtered": filtered,
        "problems": problems,
        "threads": app.config["FEEDS_CONCURRENCY"],
        "processes": app.config["FEEDS_PARSE_PROCESSES"],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_database_arguments(parser, pg_database="bench_feeds")
    parser.add_argument("--feeds", type=int, default=200)
    parser.add_argument("--items", type=int, default=50)
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds of baseline + app (best of each taken)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    parser.add_argument(
        "--filters",
        action="store_true",
        help="give every feed a filter of 10 include and 10 exclude words (judged as stored)",
    )
    add_quick_argument(parser, "--feeds 4 --items 5 --repeat 1")
    args = parser.parse_args()
    apply_quick(args, parser, feeds=4, items=5, repeat=1)

    with tempfile.TemporaryDirectory(prefix="bench-feeds-") as tmp:
        tmp_path = Path(tmp)
        os.environ["NEWSLETTERS_INSTANCE_PATH"] = str(tmp_path / "instance")
        docs = tmp_path / "feeds"
        docs.mkdir()
        paths = write_documents(docs, args.feeds, args.items)
        size = sum(p.stat().st_size for p in paths)
        print(
            f"{args.feeds} feeds x {args.items} items, {size / 1e6:.1f} MB "
            f"({size / len(paths) / 1e3:.0f} KB a feed)"
        )
        documents = [p.read_bytes() for p in paths]
        server, port = start_server(docs)
        try:
            bases, rounds = [], []
            for round_ in range(args.repeat):
                bases.append(baseline_once(documents))
                database = fresh_database(args, tmp_path, args.pg_database, f"bench{round_}.db")
                rounds.append(app_once(args, paths, port, database.url))
                print(
                    f"round {round_ + 1}: feedparser alone {bases[-1]:.2f} s, the app: first "
                    f"pass {rounds[-1]['first']:.2f} s, second pass {rounds[-1]['second']:.3f} s"
                )
        finally:
            server.terminate()
            server.wait(timeout=10)
            drop_databases(args, [args.pg_database])
    return report(args, bases, rounds)


def report(args, bases: list[float], rounds: list[dict]) -> int:
    base = min(bases)
    first = min(r["first"] for r in rounds)
    second = min(r["second"] for r in rounds)
    expected = args.feeds * args.items
    setup = rounds[0]
    ratio = first / base
    share = second / first
    filters = ", filters on" if args.filters else ""
    table = Table(
        f"Feeds, {args.feeds} x {args.items} items ({args.database}{filters}): "
        f"best of {len(rounds)}",
        judged=not args.quick,
    )
    table.add(
        "first pass, the app",
        f"{first:.2f} s ({expected / first:,.0f} items/s; {setup['threads']} fetch threads, "
        f"{setup['processes']} parse processes)",
        f"feedparser.parse alone {base:.2f} s",
    )
    table.add(
        "first pass / feedparser alone",
        f"{ratio:.2f}x",
        "",
        f"<= {BAR_FIRST}x",
        ratio <= BAR_FIRST,
    )
    if args.filters:
        table.add(
            "items filtered out (kept)",
            f"{setup['filtered']:,} of {expected:,}",
            "10 include + 10 exclude words a feed",
        )
    table.add("second pass, unchanged (all 304)", f"{second:.3f} s", f"first pass {first:.2f} s")
    table.add(
        "second pass / first pass",
        f"{share * 100:.1f} %",
        "",
        f"< {BAR_SECOND * 100:.0f} %",
        share < BAR_SECOND,
    )
    table.print()
    problems = [p for r in rounds for p in r["problems"]]
    for problem in problems:
        print(f"CHECK FAILED: {problem}")
    ok = not table.failed and not problems
    print(("PASS" if ok else "FAIL") + quick_note(args))
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "database": args.database,
                    "filters": args.filters,
                    "quick": args.quick,
                    "pass": ok,
                    "baseline_seconds": base,
                    "first_seconds": first,
                    "second_seconds": second,
                    "ratio": ratio,
                    "second_share": share,
                    "problems": problems,
                    "rounds": [
                        {"baseline": b, "first": r["first"], "second": r["second"]}
                        for b, r in zip(bases, rounds, strict=True)
                    ],
                },
                indent=2,
            )
        )
    return 0 if ok else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as error:  # could not run at all
        print(f"benchmark could not run: {type(error).__name__}: {error}", file=sys.stderr)
        sys.exit(2)
