"""The operator CLI (`flask --app wsgi ...`): each feature registers its commands here."""

from __future__ import annotations

from flask import Flask


def init_app(app: Flask) -> None:
    from newsletters.api.cli import api_tokens_cli
    from newsletters.bounces.cli import bounces_cli
    from newsletters.catalog.cli import seed_command
    from newsletters.editions.cli import editions_cli
    from newsletters.feeds.cli import digests_cli, feeds_cli
    from newsletters.staff.cli import staff_cli
    from newsletters.subscriptions.cli import subscribers_cli
    from newsletters.webhooks.cli import webhooks_cli
    from newsletters.worker import worker_command

    app.cli.add_command(api_tokens_cli)
    app.cli.add_command(bounces_cli)
    app.cli.add_command(seed_command)
    app.cli.add_command(editions_cli)
    app.cli.add_command(feeds_cli)
    app.cli.add_command(digests_cli)
    app.cli.add_command(staff_cli)
    app.cli.add_command(subscribers_cli)
    app.cli.add_command(webhooks_cli)
    app.cli.add_command(worker_command)
