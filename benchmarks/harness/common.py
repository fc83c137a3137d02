"""Paths, logging and small helpers shared by the benchmarks."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
BENCH = ROOT / "benchmarks"
VENV_BIN = ROOT / ".venv" / "bin"
FLASK = [str(VENV_BIN / "flask"), "--app", "wsgi"]


def log(message: str) -> None:
    """Progress, on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class BenchmarkError(RuntimeError):
    """The benchmark could not run (as opposed to: it ran and a bar failed)."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_checked(cmd: list[str], env: dict[str, str], what: str, timeout: float = 600) -> str:
    """Run cmd in the checkout's root; its output, or BenchmarkError when it fails."""
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise BenchmarkError(f"{what} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout + done.stderr


def add_quick_argument(parser: argparse.ArgumentParser, sizes: str) -> None:
    """--quick: tiny sizes for a smoke run; its bars are shown, not judged."""
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"a smoke run with tiny sizes ({sizes}); the bars are shown, not judged",
    )


def apply_quick(args: argparse.Namespace, parser: argparse.ArgumentParser, **sizes) -> None:
    """With --quick, each size the command line left at its default becomes the tiny one."""
    if not getattr(args, "quick", False):
        return
    for name, value in sizes.items():
        if getattr(args, name) == parser.get_default(name):
            setattr(args, name, value)


def quick_note(args: argparse.Namespace) -> str:
    """What a PASS of a --quick run means."""
    return " (--quick: the run checked out; its bars are not judged)" if args.quick else ""
