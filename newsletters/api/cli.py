import sys

import click
from flask.cli import AppGroup

from newsletters import events
from newsletters.api import tokens

api_tokens_cli = AppGroup("api-tokens", help="Tokens of the REST API (/api/v1).")


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


@api_tokens_cli.command("create")
@click.argument("name")
@click.option(
    "--scope",
    "scopes",
    required=True,
    help=f"Comma-separated scopes: {', '.join(tokens.SCOPES)}.",
)
def create_command(name: str, scopes: str) -> None:
    """Make a token NAME; prints the token alone on the last line (shown only this once)."""
    try:
        token, plain = tokens.create_token(name, scopes, actor=events.CLI, created_by="cli")
    except tokens.TokenRefused as error:
        _fail(f"api-tokens create: {error}; nothing was created")
    click.echo(f"created API token {token.name} with scope(s) {', '.join(token.scope_list)}")
    click.echo("the token is shown only now; keep it in a secret store:")
    click.echo(plain)


@api_tokens_cli.command("list")
def list_command() -> None:
    """List the tokens: name, scopes, created, last used, revoked (never the tokens)."""
    rows = tokens.list_tokens()
    if not rows:
        click.echo("no API tokens")
        return
    for token in rows:
        last = token.last_used_at.isoformat(timespec="seconds") if token.last_used_at else "never"
        state = (
            f"revoked {token.revoked_at.isoformat(timespec='seconds')}"
            if token.revoked_at
            else "active"
        )
        click.echo(
            f"{token.name}\t{','.join(token.scope_list)}\t"
            f"created {token.created_at.isoformat(timespec='seconds')}\t"
            f"last used {last}\t{state}"
        )


@api_tokens_cli.command("revoke")
@click.argument("name")
def revoke_command(name: str) -> None:
    """Revoke the token NAME for good."""
    try:
        token = tokens.revoke(name, actor=events.CLI)
    except tokens.TokenRefused as error:
        _fail(f"api-tokens revoke: {error}")
    click.echo(f"revoked API token {token.name}")
