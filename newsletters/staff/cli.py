import sys
from typing import NoReturn

import click
from flask.cli import AppGroup

from newsletters.staff import services
from newsletters.staff.models import StaffRole

staff_cli = AppGroup("staff", help="Staff accounts (editors and administrators).")


def _refuse(message: str) -> NoReturn:
    click.echo(f"staff create: {message}; nothing was created", err=True)
    sys.exit(1)


@staff_cli.command("create")
@click.argument("email")
@click.option(
    "--role",
    required=True,
    type=click.Choice([r.value for r in StaffRole]),
    help="editor: composes and sends; admin: also manages staff and newsletters.",
)
@click.option("--name", default="", help="The person's name, as shown to other staff.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from standard input (one line) instead of prompting.",
)
def create_command(email: str, role: str, name: str, password_stdin: bool) -> None:
    """Create a staff account for EMAIL; the password is prompted for (twice, hidden)."""
    # Refuse what we can before asking for a password.
    try:
        address = services.normalise_staff_email(email)
    except services.StaffError as error:
        _refuse(str(error))
    if services.staff_by_email(address) is not None:
        _refuse(f"a staff account for {address} exists already")

    if password_stdin:
        # A trailing line break is how `echo` and files end; it is not part of the password.
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = click.prompt(
            "Password", hide_input=True, confirmation_prompt=True, default="", show_default=False
        )
    try:
        staff = services.create_staff(address, role=role, password=password, name=name)
    except services.StaffError as error:
        _refuse(str(error))
    click.echo(f"created {staff.role.value} {staff.email} (staff id {staff.id})")
