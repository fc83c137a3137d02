"""`flask webhooks add|list|remove|enable`: each prints what it did and exits non-zero with
a clear message on bad input."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from newsletters import events
from newsletters.webhooks import services

webhooks_cli = AppGroup("webhooks", help="Outgoing webhooks: endpoints that get signed events.")


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


@webhooks_cli.command("add")
@click.argument("url")
@click.option(
    "--events",
    "event_types",
    required=True,
    help="Comma-separated event types: " + ", ".join(services.EVENT_TYPES) + ".",
)
def add_command(url: str, event_types: str) -> None:
    """Register URL for the given events; prints the signing secret, once, last."""
    try:
        endpoint, secret = services.add_endpoint(url, event_types, actor=events.CLI)
    except services.WebhookError as error:
        _fail(f"webhook not added: {error}")
    click.echo(f"webhook {endpoint.id} added: {endpoint.url}")
    click.echo(f"events: {', '.join(endpoint.event_list)}")
    click.echo("signing secret (shown only now; keep it with the receiver):")
    click.echo(secret)


@webhooks_cli.command("list")
def list_command() -> None:
    """Every endpoint, its events and state."""
    endpoints = services.list_endpoints()
    if not endpoints:
        click.echo("no webhooks: add one with `webhooks add URL --events EVENT[,EVENT...]`")
        return
    for endpoint in endpoints:
        state = "enabled" if endpoint.enabled else f"DISABLED: {endpoint.disabled_reason or ''}"
        click.echo(f"{endpoint.id}\t{endpoint.url}\t{','.join(endpoint.event_list)}\t{state}")
        if endpoint.enabled and endpoint.last_error:
            click.echo(f"\tlast error: {endpoint.last_error}")


@webhooks_cli.command("remove")
@click.argument("endpoint_id", type=click.IntRange(min=1, max=2**31 - 1))
def remove_command(endpoint_id: int) -> None:
    """Delete endpoint ID and its waiting events."""
    if not services.remove_endpoint(endpoint_id, actor=events.CLI):
        _fail(f"no webhook {endpoint_id}: see `webhooks list`")
    click.echo(f"webhook {endpoint_id} removed")


@webhooks_cli.command("enable")
@click.argument("endpoint_id", type=click.IntRange(min=1, max=2**31 - 1))
def enable_command(endpoint_id: int) -> None:
    """Enable a disabled endpoint again; its waiting events are sent at once."""
    if not services.enable_endpoint(endpoint_id, actor=events.CLI):
        _fail(f"no webhook {endpoint_id}: see `webhooks list`")
    click.echo(f"webhook {endpoint_id} enabled")
