"""Before and after, side by side: the send, feeds and subscribe benchmarks of two
checkouts, run alternately on this machine with the same sizes.

    .venv/bin/python benchmarks/compare.py BEFORE_DIR AFTER_DIR [--rounds N] [--quick]
                                           [--database sqlite|postgresql]
                                           [--only send,feeds,subscribe]

Each checkout runs its own benchmarks with its own .venv (`DIR/.venv/bin/python
DIR/benchmarks/...`, from DIR), so the figures are those of its code. A round runs each
benchmark once per checkout, one after the other; the order flips every round (before
first, then after first, ...) so a drift in the machine's load favours neither side. The
table shows the median of the rounds for each side and after / before; a figure where
lower is better is marked (lower). After every round the table so far goes to stderr,
so a comparison stopped early still leaves its figures. Sizes are passed as options both
checkouts know (--recipients, --feeds, --duration, ...), so a checkout older than --quick
works too.

The figures: send (send_edition.py): throughput ratio, app and baseline msg/s, enqueue s;
feeds (feeds.py): first pass s, feedparser alone s, their ratio, second pass share;
subscribe (subscribe_load.py): ratio app / Flask-SQLAlchemy view, app requests/s, CPU ms
per request. Exit status 0 when every run gave its figures (a bar that failed is still a
measurement), 2 when one could not run.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SIZES = {
    "send": ["--recipients", "20000", "--small", "2000"],
    "feeds": ["--feeds", "200", "--items", "50", "--repeat", "1"],
    "subscribe": ["--duration", "10", "--warmup", "3"],
}
QUICK_SIZES = {
    "send": ["--recipients", "200", "--small", "50"],
    "feeds": ["--feeds", "4", "--items", "5", "--repeat", "1"],
    "subscribe": ["--duration", "1", "--warmup", "1", "--connections", "4"],
}
SCRIPTS = {"send": "send_edition.py", "feeds": "feeds.py", "subscribe": "subscribe_load.py"}
# Figures where lower is better; the others: higher is better.
LOWER_IS_BETTER = {
    "send: enqueue s",
    "feeds: first pass s",
    "feeds: feedparser alone s",
    "feeds: first pass / feedparser",
    "feeds: second pass / first pass %",
    "subscribe: app CPU ms per request",
}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def send_figures(data: dict, _stdout: str) -> dict[str, float]:
    return {
        "send: throughput ratio": data["ratio"],
        "send: app msg/s": data["app_rate"],
        "send: baseline msg/s": max(data["baseline_rates"]),
        "send: enqueue s": data["enqueue_seconds"],
    }


# feeds.py before it had --json printed these lines; read them when there is no JSON.
FEEDS_TEXT = {
    "feeds: feedparser alone s": r"baseline, feedparser\.parse alone \(best of \d+\): ([\d.]+) s",
    "feeds: first pass s": r"first pass, the app \(.*\): ([\d.]+) s",
    "feeds: first pass / feedparser": r"first pass / feedparser alone: ([\d.]+)x",
    "feeds: second pass / first pass %": r"second pass / first pass: ([\d.]+) %",
}


def feeds_figures(data: dict | None, stdout: str) -> dict[str, float]:
    if data is not None:
        return {
            "feeds: first pass s": data["first_seconds"],
            "feeds: feedparser alone s": data["baseline_seconds"],
            "feeds: first pass / feedparser": data["ratio"],
            "feeds: second pass / first pass %": data["second_share"] * 100,
        }
    out = {}
    for name, pattern in FEEDS_TEXT.items():
        found = re.search(pattern, stdout)
        if found is None:
            raise ValueError(f"no {name!r} in the output")
        out[name] = float(found.group(1))
    return out


def subscribe_figures(data: dict, _stdout: str) -> dict[str, float]:
    app = data["app"]
    responses = sum(app["statuses"].values()) or 1
    out = {
        "subscribe: app requests/s": app["rate"],
        "subscribe: app CPU ms per request": app["server_cpu_s"] / responses * 1000,
    }
    if data.get("ratio") is not None:
        out["subscribe: ratio app / ORM view"] = data["ratio"]
    if "bare-orm" in data:
        out["subscribe: ORM view requests/s"] = data["bare-orm"]["rate"]
    return out


READERS: dict[str, Callable[[dict | None, str], dict[str, float]]] = {
    "send": send_figures,
    "feeds": feeds_figures,
    "subscribe": subscribe_figures,
}


def run_one(checkout: Path, bench: str, args: argparse.Namespace, out_dir: Path, tag: str):
    """One benchmark of one checkout: its figures, or None when it could not run."""
    json_path = out_dir / f"{tag}.json"
    sizes = (QUICK_SIZES if args.quick else SIZES)[bench]
    cmd = [
        str(checkout / ".venv" / "bin" / "python"),
        str(checkout / "benchmarks" / SCRIPTS[bench]),
        *sizes,
        "--database",
        args.database,
    ]
    if bench != "feeds" or "--json" in help_text(checkout, bench):
        cmd += ["--json", str(json_path)]
    done = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True)
    (out_dir / f"{tag}.out").write_text(done.stdout + "\n--- stderr\n" + done.stderr)
    if done.returncode not in (0, 1):
        log(f"{tag}: could not run (exit {done.returncode}); see {out_dir / (tag + '.out')}")
        return None
    data = json.loads(json_path.read_text()) if json_path.exists() else None
    try:
        return READERS[bench](data, done.stdout)
    except (KeyError, TypeError, ValueError) as exc:
        log(f"{tag}: no figures ({exc}); see {out_dir / (tag + '.out')}")
        return None


_HELP: dict[tuple[Path, str], str] = {}


def help_text(checkout: Path, bench: str) -> str:
    key = (checkout, bench)
    if key not in _HELP:
        _HELP[key] = subprocess.run(
            [
                str(checkout / ".venv" / "bin" / "python"),
                str(checkout / "benchmarks" / SCRIPTS[bench]),
                "--help",
            ],
            cwd=checkout,
            capture_output=True,
            text=True,
        ).stdout
    return _HELP[key]


def table(results: dict[str, dict[str, list[float]]], rounds: int) -> list[str]:
    names = list(dict.fromkeys(n for side in results.values() for n in side))
    rows = [("figure", "before", "after", "after / before")]
    for name in names:
        before = results["before"].get(name, [])
        after = results["after"].get(name, [])
        b = statistics.median(before) if before else None
        a = statistics.median(after) if after else None
        ratio = f"{a / b:.3f}" if a is not None and b else "-"
        label = name + ("  (lower)" if name in LOWER_IS_BETTER else "")
        rows.append((label, fmt(b, before), fmt(a, after), ratio))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"Before / after, median of {rounds} round(s) (all rounds in brackets)"]
    for r in rows:
        lines.append("  " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    return [line.rstrip() for line in lines]


def fmt(median: float | None, values: list[float]) -> str:
    if median is None:
        return "-"
    if len(values) == 1:
        return f"{median:.3f}"
    return f"{median:.3f} [{', '.join(f'{v:.3f}' for v in values)}]"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before", type=Path, help="a checkout with its own .venv")
    p.add_argument("after", type=Path, help="a checkout with its own .venv")
    p.add_argument("--rounds", type=int, default=3, help="runs of each benchmark per side [3]")
    p.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run of this tool")
    p.add_argument("--database", choices=["sqlite", "postgresql"], default="sqlite")
    p.add_argument(
        "--only",
        default="send,feeds,subscribe",
        help="comma-separated subset of send,feeds,subscribe [all three]",
    )
    args = p.parse_args(argv)
    benches = [b for b in args.only.split(",") if b]
    unknown = set(benches) - set(SCRIPTS)
    if unknown:
        p.error(f"--only: unknown {', '.join(sorted(unknown))}")
    sides = {"before": args.before.resolve(), "after": args.after.resolve()}
    for side, checkout in sides.items():
        if not (checkout / ".venv" / "bin" / "python").exists():
            p.error(f"{side}: {checkout} has no .venv (run `make setup` there)")
    out_dir = Path(tempfile.mkdtemp(prefix="bench-compare-"))
    log(f"outputs in {out_dir}")
    results: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    failed = False
    for round_ in range(1, args.rounds + 1):
        order = ["before", "after"] if round_ % 2 else ["after", "before"]
        for bench in benches:
            for side in order:
                tag = f"r{round_}-{bench}-{side}"
                log(f"round {round_}: {bench}, {side} ({sides[side]})")
                figures = run_one(sides[side], bench, args, out_dir, tag)
                if figures is None:
                    failed = True
                    continue
                for name, value in figures.items():
                    results[side].setdefault(name, []).append(value)
        # The table so far, on stderr: an interrupted comparison still leaves its figures.
        so_far = "\n".join(table(results, round_))
        log(f"after round {round_}:\n{so_far}")
    print()
    print(f"before: {sides['before']}")
    print(f"after:  {sides['after']}")
    sizes = QUICK_SIZES if args.quick else SIZES
    print(
        f"database {args.database}; sizes: "
        + "; ".join(f"{b} {' '.join(sizes[b])}" for b in benches)
    )
    print("\n".join(table(results, args.rounds)))
    print(f"outputs: {out_dir}")
    return 2 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
