import sys
from pathlib import Path

import click
from flask.cli import AppGroup

from newsletters import events
from newsletters.editions import editing, lifecycle, segments
from newsletters.editions.states import EditionError

editions_cli = AppGroup("editions", help="Compose and send editions.")


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


@editions_cli.command("create")
@click.option("--newsletter", "slug", required=True, help="Slug of the newsletter.")
@click.option("--subject", required=True, help="The subject line.")
@click.option(
    "--body-file",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The body, in Markdown (UTF-8).",
)
@click.option("--preheader", default="", help="Preview text shown after the subject.")
@click.option("--meeting-date", type=click.DateTime(formats=["%Y-%m-%d"]), default=None)
def create_command(slug: str, subject: str, body_file: Path, preheader: str, meeting_date) -> None:
    """Create a draft edition; prints its id alone on the last line."""
    try:
        body = body_file.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _fail(f"{body_file}: not UTF-8 text")
    try:
        edition = editing.create_draft(
            newsletter_slug=slug,
            subject=subject,
            body_markdown=body,
            preheader=preheader,
            meeting_date=meeting_date.date() if meeting_date else None,
            created_by="cli",
            actor=events.CLI,
        )
    except EditionError as error:
        _fail(f"edition not created: {error}")
    click.echo(f"created draft edition of {slug}: {edition.subject}")
    click.echo(edition.id)


@editions_cli.command("send")
@click.argument("edition_id", type=int)
@click.option(
    "--where",
    "where",
    default=None,
    metavar="SEGMENT",
    help=(
        'Send only to the confirmed subscribers who match, e.g. "region=Hovedstaden AND '
        'role=borgmester" (fields municipality/kommune, region, role/rolle; AND/OG, OR/ELLER, '
        'NOT/IKKE, parentheses). --where "" sends to everyone; without --where the segment '
        "stored on the edition (if any) is kept."
    ),
)
def send_command(edition_id: int, where: str | None) -> None:
    """Start sending a draft edition; the worker delivers it."""
    try:
        recipients = lifecycle.start_send(
            edition_id,
            segment=lifecycle.STORED if where is None else where,
            actor=events.CLI,
        )
    except segments.SegmentError as error:
        _fail(f"not sent: --where: {error}")
    except EditionError as error:
        _fail(f"not sent: {error}")
    segment = lifecycle.get(edition_id).segment
    click.echo(
        f"edition {edition_id}: sending to {recipients} recipient(s)"
        + (f" matching {segment}" if segment else "")
        + "; the worker delivers"
    )


@editions_cli.command("status")
@click.argument("edition_id", type=int)
def status_command(edition_id: int) -> None:
    """Show a send's progress."""
    try:
        p = lifecycle.progress(edition_id)
    except EditionError as error:
        _fail(str(error))
    click.echo(
        f"edition {edition_id}: {p.status}; {p.recipients} recipient(s): {p.sent} sent, "
        f"{p.failed} failed, {p.counts.get('skipped', 0)} skipped, {p.remaining} remaining, "
        f"{p.possible_duplicates} possible duplicate(s); {p.rate_per_second:.1f}/s"
        + (f"; paused: {p.paused_reason}" if p.paused_reason else "")
    )


def _control(name: str, done: str, action) -> None:
    # The help is given here: click reads a command's docstring when it is made.
    @editions_cli.command(name, help=f"{name.capitalize()} a send (by the edition's id).")
    @click.argument("edition_id", type=int)
    def command(edition_id: int) -> None:
        try:
            action(edition_id, actor=events.CLI)
        except EditionError as error:
            _fail(f"not {done}: {error}")
        click.echo(f"edition {edition_id}: {done}")


_control("pause", "paused", lifecycle.pause)
_control("resume", "resumed", lifecycle.resume)
_control("cancel", "cancelled", lifecycle.cancel)
