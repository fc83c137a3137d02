"""Loaded only by scripts/test-at-hours (PYTHONPATH), in every Python process of the run.

libfaketime 0.9.10 (Debian 12) with FAKETIME_DONT_FAKE_MONOTONIC=1 answers
clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, ...), which time.sleep uses, with
EINVAL; faking the monotonic clock instead hangs threading's timed waits. Sleeping with
select(), which libfaketime leaves alone, sidesteps the bug: a tool's problem, not the
app's.
"""

import select
import time

_sleep = time.sleep


def _sleep_despite_faketime(seconds: float) -> None:
    try:
        _sleep(seconds)
    except OSError:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            select.select([], [], [], left)


time.sleep = _sleep_despite_faketime
