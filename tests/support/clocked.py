"""Run a Python module in another process on a test's running clock.

    python -m tests.support.clocked OFFSET_SECONDS MODULE [ARG ...]

sets the app's clock (timeutil) to the real time plus OFFSET_SECONDS, the distance of
the test's own `Clock.running_from(...)` (`clock.offset_seconds`), then runs MODULE as
`python -m MODULE ARG ...` would: both processes then read the same instant. Only the
tests use it; the app itself knows nothing of it.
"""

from __future__ import annotations

import runpy
import sys
from datetime import UTC, datetime, timedelta

from newsletters import timeutil
from tests.support.clock import Clock


def main() -> None:
    offset, module, *args = sys.argv[1:]
    clock = Clock.running_from(datetime.now(UTC) + timedelta(seconds=float(offset)))
    timeutil.set_clock(clock)
    sys.argv = [module, *args]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
