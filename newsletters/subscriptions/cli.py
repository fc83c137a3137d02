import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import AppGroup
from sqlalchemy.exc import DBAPIError

from newsletters import events
from newsletters.busy import is_busy
from newsletters.subscriptions import erasure, suppression
from newsletters.subscriptions.importing import (
    ImportRefused,
    announce_export,
    export_confirmed,
    import_subscribers,
)

subscribers_cli = AppGroup("subscribers", help="Import and export subscribers.")


@subscribers_cli.command("import")
@click.argument("csv_file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--newsletter", "slug", required=True, help="Slug of the newsletter.")
@click.option("--basis", help="Enrol as confirmed on this recorded basis (no opt-in mail).")
@click.option(
    "--welcome", is_flag=True, help="With --basis: send each enrolled person the welcome mail."
)
@click.option("--dry-run", is_flag=True, help="Report what would change; change nothing.")
def import_command(
    csv_file: Path, slug: str, basis: str | None, welcome: bool, dry_run: bool
) -> None:
    """Import subscribers from CSV (columns: email, name, municipality, role)."""
    try:
        # Streamed: the import reads the file twice (check, then write) in bounded memory.
        with csv_file.open("rb") as stream:
            report = import_subscribers(
                stream,
                newsletter_slug=slug,
                basis=basis,
                welcome=welcome,
                dry_run=dry_run,
                file_name=csv_file.name,
            )
    except ImportRefused as refused:
        click.echo(f"{csv_file}: refused, nothing was imported:", err=True)
        for line, reason in refused.problems:
            where = f"line {line}" if line else "file"
            click.echo(f"  {where}: {reason}", err=True)
        sys.exit(1)
    except DBAPIError as error:
        if not is_busy(error):
            raise
        # Every chunk is written whole or not at all, and is idempotent.
        click.echo(
            f"{csv_file}: stopped, the database was busy for too long "
            f"({getattr(error, 'orig', error)}). What was imported so far is complete; "
            "run the same command again to import the rest.",
            err=True,
        )
        sys.exit(1)
    prefix = "dry run, nothing changed: would have " if dry_run else ""
    for note in report.notes:
        click.echo(f"note: {note}")
    for address in report.withdrawn:
        click.echo(f"skipped {address}: unsubscribed earlier, a withdrawal is not overridden")
    for address in report.suppressed:
        click.echo(
            f"skipped {address}: on the suppression list (bounced or asked not to be mailed)"
        )
    click.echo(
        f"{prefix}imported {report.rows} row(s) into {slug}: "
        f"{report.new_subscribers} new subscriber(s), {report.updated_subscribers} updated, "
        f"{report.enrolled} enrolled, {report.invited} invited, {report.welcomed} welcome "
        f"mail(s), {report.unchanged} unchanged, {report.skipped} skipped"
    )


@subscribers_cli.command("export")
@click.option("--newsletter", "slug", required=True, help="Slug of the newsletter.")
def export_command(slug: str) -> None:
    """Write the newsletter's confirmed subscribers as CSV to standard output."""
    announce_export(slug, actor=events.CLI)
    try:
        for chunk in export_confirmed(slug):
            click.echo(chunk, nl=False)
    except ImportRefused as refused:
        click.echo(f"export refused: {refused.problems[0][1]}", err=True)
        sys.exit(1)


@subscribers_cli.command("purge-pending")
@click.option(
    "--days",
    type=click.FloatRange(min=0),
    help="Older than this many days (default: the PENDING_PURGE_DAYS setting).",
)
def purge_pending_command(days: float | None) -> None:
    """Delete pending subscriptions that were never confirmed (and their consent records)."""
    subscriptions, subscribers = erasure.purge_pending(days)
    click.echo(
        f"purged {subscriptions} pending subscription(s) never confirmed, and "
        f"{subscribers} subscriber(s) left with none"
    )


@subscribers_cli.command("suppression-key")
def suppression_key_command() -> None:
    """Before rotating SECRET_KEY: print the suppression list's key, for
    NEWSLETTERS_SUPPRESSION_HASH_KEY (it is derived from SECRET_KEY while that is unset)."""
    if current_app.config.get("SUPPRESSION_HASH_KEY"):
        click.echo(
            "SUPPRESSION_HASH_KEY is set already: keep it as it is when SECRET_KEY is rotated",
            err=True,
        )
        return
    click.echo("hex:" + suppression.derived_key().hex())
    click.echo(
        "Set NEWSLETTERS_SUPPRESSION_HASH_KEY to the line above (a secret: keep it as you keep "
        "SECRET_KEY) before rotating SECRET_KEY; erased people then stay suppressed.",
        err=True,
    )
