"""A `flask worker` killed (SIGKILL) in the middle of a webhook call loses no event: its
lease runs out, another worker sends the event again with the same webhook-id, and the
receiver can tell the repeat."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from sqlalchemy import select

from newsletters import events
from newsletters.extensions import db
from newsletters.webhooks import services
from newsletters.webhooks.models import WebhookDelivery
from tests.conftest import ROOT_DIR, TEST_SECRET
from tests.support.hookserver import HookServer

pytestmark = pytest.mark.e2e

EVENTS = 30


def _worker_env(database_url: str, tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NEWSLETTERS_")}
    env.update(
        NEWSLETTERS_SECRET_KEY=TEST_SECRET,
        NEWSLETTERS_SQLALCHEMY_DATABASE_URI=database_url,
        NEWSLETTERS_INSTANCE_PATH=str(tmp_path / "instance"),
        NEWSLETTERS_WORKER_LEASE_SECONDS="1",
        NEWSLETTERS_WORKER_POLL_SECONDS="0.1",
        NEWSLETTERS_WEBHOOKS_ALLOW_PRIVATE="true",
        NEWSLETTERS_WEBHOOKS_TIMEOUT="10",
        NEWSLETTERS_WEBHOOKS_BATCH_SIZE="10",
    )
    return env


@pytest.mark.parametrize("kill_at", [1, 7, 18])
def test_sigkill_mid_delivery_loses_no_event(make_app, migrated_database, tmp_path, kill_at):
    app = make_app(WEBHOOKS_ALLOW_PRIVATE=True)
    receiver = HookServer().start()
    try:
        with app.app_context():
            _, receiver.secret = services.add_endpoint(receiver.url, "edition.started")
            for edition_id in range(1, EVENTS + 1):
                events.announce("edition.started", "", audited=False, edition_id=edition_id)
            db.session.commit()
            queued = set(db.session.scalars(select(WebhookDelivery.event_id)))
            db.session.remove()
        assert len(queued) == EVENTS
        # The call at which the worker is killed does not answer until long after.
        receiver.answer(*(["200"] * (kill_at - 1)), "hang:8", then="200")
        env = _worker_env(migrated_database, tmp_path)
        command = [sys.executable, "-m", "flask", "--app", "wsgi", "worker"]
        worker = subprocess.Popen(
            command, cwd=ROOT_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        try:
            receiver.wait_for(kill_at, timeout=60)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(timeout=10)
        time.sleep(1.2)  # the dead worker's lease runs out

        finisher = subprocess.run(
            [*command, "--once"], cwd=ROOT_DIR, env=env, capture_output=True, text=True, timeout=120
        )
        assert finisher.returncode == 0, finisher.stdout + finisher.stderr

        calls = receiver.calls
        assert all(call.verified for call in calls)
        received = [call.webhook_id for call in calls]
        assert set(received) == queued, "an event was lost"
        # The call in flight at the kill came again, with the same id.
        repeated = {i for i in received if received.count(i) > 1}
        assert calls[kill_at - 1].webhook_id in repeated
        # Repeats: the call in flight, and at most the one before it whose outcome was
        # not yet committed (outcomes are recorded as they come, a few together).
        assert len(received) - len(set(received)) <= 2
        with app.app_context():
            undelivered = db.session.scalars(
                select(WebhookDelivery.id).where(WebhookDelivery.delivered_at.is_(None))
            ).all()
            db.session.remove()
        assert undelivered == []
    finally:
        receiver.stop()
