"""PRODUCT.md invariant 2: kill the worker with SIGKILL at any instant, start it again,
and the send completes: nobody skipped, at most one duplicate per kill, each counted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from newsletters.editions import sending
from newsletters.extensions import db
from tests.conftest import ROOT_DIR, TEST_SECRET
from tests.support.editions import confirmed_audience, draft, received_counts

pytestmark = pytest.mark.e2e


def _worker_env(
    database_url: str, smtp_port: int, tmp_path, connections: int = 1
) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env.update(
        NEWSLETTERS_SECRET_KEY=TEST_SECRET,
        NEWSLETTERS_SQLALCHEMY_DATABASE_URI=database_url,
        NEWSLETTERS_INSTANCE_PATH=str(tmp_path / "instance"),
        NEWSLETTERS_MAIL_SERVER="127.0.0.1",
        NEWSLETTERS_MAIL_PORT=str(smtp_port),
        NEWSLETTERS_WORKER_LEASE_SECONDS="1",
        NEWSLETTERS_WORKER_POLL_SECONDS="0.1",
        NEWSLETTERS_SEND_BATCH_SIZE="25",
        NEWSLETTERS_SEND_CONNECTIONS=str(connections),
    )
    return env


@pytest.mark.parametrize(
    ("kill_after", "connections"),
    [((15, 70, 160), 1), ((1, 2, 3), 1), ((20, 90, 170), 3)],
    ids=["spread", "early", "three-lanes"],
)
def test_sigkill_mid_send_skips_nobody_and_counts_duplicates(
    make_app, smtp_server, migrated_database, tmp_path, kill_after, connections
):
    app = make_app(MAIL_SERVER="127.0.0.1", MAIL_PORT=smtp_server.port)
    audience = confirmed_audience(app, 250)
    edition_id = draft(app)
    with app.app_context():
        sending.start_send(edition_id)
    env = _worker_env(migrated_database, smtp_server.port, tmp_path, connections)
    command = [sys.executable, "-m", "flask", "--app", "wsgi", "worker"]

    kills = 0
    for target in kill_after:
        worker = subprocess.Popen(
            command, cwd=ROOT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            smtp_server.wait_for(target, timeout=60)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        kills += 1
        time.sleep(1.1)  # the dead worker's lease runs out

    # Started again, the worker finishes the send.
    finisher = subprocess.run(
        [*command, "--once"], cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=120
    )
    assert finisher.returncode == 0, finisher.stdout + finisher.stderr

    counts = received_counts(smtp_server, audience)
    assert min(counts.values()) == 1, "somebody was skipped"
    duplicates = sum(n - 1 for n in counts.values())
    # At most one message in flight per sending lane (each lane is a worker).
    assert duplicates <= kills * connections
    with app.app_context():
        progress = sending.progress(edition_id)
        db.session.remove()
    assert progress.status == "sent"
    assert progress.sent == len(audience)
    # Every real duplicate was counted as a possible one.
    assert progress.possible_duplicates >= duplicates
    assert progress.possible_duplicates <= kills * connections
