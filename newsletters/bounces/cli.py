import sys

import click
from flask import current_app
from flask.cli import AppGroup

from newsletters.bounces import mailboxes
from newsletters.bounces.processing import process_messages

bounces_cli = AppGroup("bounces", help="Read bounce mail and stop mail to bouncing addresses.")


@bounces_cli.command("process")
@click.option("--maildir", type=click.Path(file_okay=False), help="Read this Maildir.")
@click.option("--imap", "imap_host", help="Read this IMAP server (IMAPS unless --no-ssl).")
@click.option("--imap-port", type=int, help="Port (default 993, or 143 with --no-ssl).")
@click.option("--imap-user", help="IMAP user name.")
@click.option(
    "--imap-password-stdin", is_flag=True, help="Read the IMAP password from standard input."
)
@click.option("--imap-folder", help="IMAP folder (default INBOX).")
@click.option("--no-ssl", is_flag=True, help="Plain IMAP on port 143 (a server on loopback).")
def process_command(
    maildir: str | None,
    imap_host: str | None,
    imap_port: int | None,
    imap_user: str | None,
    imap_password_stdin: bool,
    imap_folder: str | None,
    no_ssl: bool,
) -> None:
    """Read unseen bounce mail, record the bounces, stop mail to addresses that bounce.

    Without options it reads BOUNCE_MAILDIR or BOUNCE_IMAP_HOST from the settings.
    """
    cfg = current_app.config
    if maildir and imap_host:
        _fail("give --maildir or --imap, not both")
    if not maildir and not imap_host:
        maildir = cfg.get("BOUNCE_MAILDIR")
        imap_host = None if maildir else cfg.get("BOUNCE_IMAP_HOST")
    if not maildir and not imap_host:
        _fail("no bounce mailbox: give --maildir PATH or --imap HOST (or set BOUNCE_MAILDIR)")
    try:
        if maildir:
            source = f"Maildir {maildir}"
            context = mailboxes.maildir(maildir)
        else:
            password = (
                sys.stdin.readline().rstrip("\r\n")
                if imap_password_stdin
                else cfg.get("BOUNCE_IMAP_PASSWORD")
            )
            user = imap_user or cfg.get("BOUNCE_IMAP_USERNAME")
            if not user or password is None:
                _fail("IMAP needs a user and a password (--imap-user, --imap-password-stdin)")
            settings = mailboxes.ImapSettings(
                host=imap_host,
                username=user,
                password=password,
                port=imap_port or cfg.get("BOUNCE_IMAP_PORT"),
                use_ssl=not no_ssl and bool(cfg.get("BOUNCE_IMAP_SSL", True)),
                folder=imap_folder or cfg.get("BOUNCE_IMAP_FOLDER") or "INBOX",
            )
            source = f"IMAP {imap_host}/{settings.folder}"
            context = mailboxes.imap(settings)
        with context as (messages, mark_seen):
            stats = process_messages(messages, mark_seen)
    except mailboxes.MailboxError as exc:
        _fail(str(exc))
    for error in stats.errors:
        click.echo(f"warning: {error}", err=True)
    click.echo(
        f"{source}: {stats.messages} message(s) read: {stats.hard} hard bounce(s), "
        f"{stats.soft} soft bounce(s), {stats.stopped} address(es) stopped; "
        f"{stats.auto_replies} auto-reply(ies), {stats.warnings} delay warning(s) and "
        f"{stats.not_bounces} other message(s) ignored; {stats.unattributed} bounce(s) for "
        f"unknown addresses; {stats.already_recorded} already recorded"
    )


def _fail(message: str) -> None:
    click.echo(f"bounces process: {message}", err=True)
    sys.exit(2)
