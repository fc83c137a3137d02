import logging
import signal

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletters.mailing.worker import Worker


@click.command("worker")
@click.option("--once", is_flag=True, help="Do the work that is due now, then exit.")
@with_appcontext
def worker_command(once: bool) -> None:
    """Run the delivery worker (and scheduler) in the foreground until SIGTERM."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = current_app._get_current_object()
    worker = Worker(app)
    if once:
        while worker.run_once():
            pass
        click.echo(f"worker {worker.worker_id}: nothing more is due")
        return

    def _stop(signum, frame) -> None:
        click.echo(f"worker {worker.worker_id}: stopping after the current message")
        worker.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    click.echo(f"worker {worker.worker_id}: running (SIGTERM stops it)")
    worker.run_forever()
    click.echo(f"worker {worker.worker_id}: stopped")
