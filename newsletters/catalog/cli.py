import click
from flask.cli import with_appcontext

from newsletters.catalog.services import seed_newsletters


@click.command("seed")
@with_appcontext
def seed_command() -> None:
    """Create KL's four newsletters (idempotent)."""
    created, existing = seed_newsletters()
    for slug in created:
        click.echo(f"created newsletter {slug}")
    for slug in existing:
        click.echo(f"newsletter {slug} exists, left as it is")
    click.echo(f"seed: {len(created)} created, {len(existing)} already there")
