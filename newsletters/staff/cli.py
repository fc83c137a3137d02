import sys
from typing import NoReturn

import click
from flask.cli import AppGroup

from newsletters import events
from newsletters.staff import rights, services
from newsletters.staff.models import Staff, StaffRole
from newsletters.staff.twofactor import services as twofactor

staff_cli = AppGroup("staff", help="Staff accounts (editors and administrators).")


def _refuse(
    message: str, command: str = "create", outcome: str = "nothing was created"
) -> NoReturn:
    click.echo(f"staff {command}: {message}; {outcome}", err=True)
    sys.exit(1)


def _read_password(password_stdin: bool) -> str:
    if password_stdin:
        # A trailing line break is how `echo` and files end; it is not part of the password.
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt(
        "Password", hide_input=True, confirmation_prompt=True, default="", show_default=False
    )


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

    password = _read_password(password_stdin)
    try:
        staff = services.create_staff(address, role=role, password=password, name=name)
    except services.StaffError as error:
        _refuse(str(error))
    click.echo(f"created {staff.role.value} {staff.email} (staff id {staff.id})")


@staff_cli.command("set-password")
@click.argument("email")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
def set_password_command(email: str, password_stdin: bool) -> None:
    """Set a new password for EMAIL (for a locked-out administrator); ends its sessions."""
    unchanged = "the password was not changed"
    try:
        address = services.normalise_staff_email(email)
    except services.StaffError as error:
        _refuse(str(error), "set-password", unchanged)
    staff = services.staff_by_email(address)
    if staff is None:
        _refuse(f"there is no staff account for {address}", "set-password", unchanged)
    password = _read_password(password_stdin)
    try:
        services.set_password(staff.id, password)
    except services.StaffError as error:
        _refuse(str(error), "set-password", unchanged)
    click.echo(f"new password set for {address}; its open sessions have ended")


@staff_cli.command("set-role")
@click.argument("email")
@click.argument("role", type=click.Choice([r.value for r in StaffRole]))
def set_role_command(email: str, role: str) -> None:
    """Give EMAIL another role; ends its sessions, so it logs in again with the new one."""
    unchanged = "the role was not changed"
    try:
        address = services.normalise_staff_email(email)
    except services.StaffError as error:
        _refuse(str(error), "set-role", unchanged)
    staff = services.staff_by_email(address)
    if staff is None:
        _refuse(f"there is no staff account for {address}", "set-role", unchanged)
    try:
        services.set_role(staff.id, role)
    except services.StaffError as error:
        _refuse(str(error), "set-role", unchanged)
    click.echo(f"{address} is now {role}; its open sessions have ended")


def _account(email: str, command: str, unchanged: str) -> Staff:
    try:
        address = services.normalise_staff_email(email)
    except services.StaffError as error:
        _refuse(str(error), command, unchanged)
    staff = services.staff_by_email(address)
    if staff is None:
        _refuse(f"there is no staff account for {address}", command, unchanged)
    return staff


@staff_cli.command("reset-2fa")
@click.argument("email")
def reset_2fa_command(email: str) -> None:
    """For a locked-out person: remove EMAIL's two-factor set-up and recovery codes and end
    its sessions. Where the role requires two factors, the next login sets them up again."""
    staff = _account(email, "reset-2fa", "nothing was changed")
    ended = twofactor.reset(staff.id, actor=events.CLI)
    then = (
        "they set it up again at their next login"
        if twofactor.required_for(staff)
        else "they log in with the password alone"
    )
    click.echo(
        f"two-factor login of {staff.email} reset: secret and recovery codes removed, "
        f"{ended} open session(s) ended; {then}"
    )


@staff_cli.command("reseal-2fa")
def reseal_2fa_command() -> None:
    """After a new TWOFA_ENCRYPTION_KEY (the old one in TWOFA_ENCRYPTION_KEY_FALLBACKS):
    encrypt every stored TOTP secret with the new key, so the old one can be dropped."""
    report = twofactor.reseal_all(actor=events.CLI)
    click.echo(
        f"{report.resealed} two-factor secret(s) encrypted again with the current key, "
        f"{report.already_current} already were"
    )
    if report.unreadable:
        click.echo(
            f"{len(report.unreadable)} no key can read (left as they are; each logs in with "
            "a recovery code, or is reset with `flask staff reset-2fa EMAIL`): "
            + ", ".join(report.unreadable)
        )


@staff_cli.command("newsletters")
@click.argument("email")
@click.option("--only", help="Limit the editor to these newsletters (slugs, comma-separated).")
@click.option("--all", "all_", is_flag=True, help="Let the editor work on every newsletter.")
def newsletters_command(email: str, only: str | None, all_: bool) -> None:
    """Show, or with --only/--all change, the newsletters EMAIL may work on."""
    unchanged = "the newsletters were not changed"
    if only is not None and all_:
        _refuse("give --only or --all, not both", "newsletters", unchanged)
    staff = _account(email, "newsletters", unchanged)
    if only is not None:
        slugs = [s.strip() for s in only.split(",") if s.strip()]
        if not slugs:
            _refuse("--only needs at least one newsletter slug", "newsletters", unchanged)
        try:
            rights.set_newsletters(staff.id, slugs, actor=events.CLI)
        except services.StaffError as error:
            _refuse(str(error), "newsletters", unchanged)
    elif all_:
        rights.set_newsletters(staff.id, None, actor=events.CLI)
    limit = rights.slugs_of(staff)
    if staff.role is StaffRole.ADMIN:
        click.echo(f"{staff.email} is an administrator: every newsletter")
    elif limit:
        click.echo(f"{staff.email} may work on: {', '.join(limit)}")
    else:
        click.echo(f"{staff.email} may work on every newsletter")
