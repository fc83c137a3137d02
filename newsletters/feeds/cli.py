"""`flask feeds ...` and `flask digests run`: each prints what it did and exits non-zero
with a clear message on bad input."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from newsletters.feeds import digests, services
from newsletters.feeds.digests import DigestError
from newsletters.feeds.forms import REFUSED_ADDRESS_MESSAGE
from newsletters.feeds.services import FeedError

feeds_cli = AppGroup("feeds", help="RSS and Atom feeds of the feed-based newsletters.")
digests_cli = AppGroup("digests", help="Digests of new feed items.")


def _fail(message: str) -> None:
    click.echo(message, err=True)
    sys.exit(1)


@feeds_cli.command("add")
@click.argument("slug")
@click.argument("url")
@click.option("--title", default="", help="A name for the feed on the staff pages.")
def add_command(slug: str, url: str, title: str) -> None:
    """Attach the feed at URL to the newsletter SLUG."""
    try:
        feed = services.add_feed(slug, url, title=title, by="cli")
    except services.RefusedFeedAddress as error:
        # In the operators' language (Danish), with the technical reason after it.
        _fail(f"{REFUSED_ADDRESS_MESSAGE} ({error.reason}: {error.url})")
    except FeedError as error:
        _fail(f"feed not added: {error}")
    click.echo(f"feed {feed.id} added to {slug}: {feed.url}")
    click.echo(
        "the worker fetches it at once (a separate `flask worker` within WORKER_POLL_SECONDS), "
        "or fetch it here with `feeds fetch`"
    )


@feeds_cli.command("fetch")
def fetch_command() -> None:
    """Fetch every enabled feed now, whether due or not."""
    outcomes = services.fetch_feeds()
    if not outcomes:
        click.echo("no enabled feeds: add one with `feeds add SLUG URL`")
        return
    for outcome in outcomes:
        click.echo(outcome.describe())
    failed = sum(1 for o in outcomes if o.error or o.disabled)
    new = sum(o.new for o in outcomes)
    updated = sum(o.updated for o in outcomes)
    click.echo(
        f"fetched {len(outcomes)} feed(s): {new} new item(s), {updated} updated, "
        f"{failed} with errors"
    )


@feeds_cli.command("list")
def list_command() -> None:
    """List every feed with its health."""
    rows = services.all_feeds()
    if not rows:
        click.echo("no feeds")
        return
    for feed, slug in rows:
        state = "enabled" if feed.enabled else "disabled"
        last = feed.last_success_at.isoformat(timespec="seconds") if feed.last_success_at else "-"
        error = f"; last error: {feed.last_error}" if feed.last_error else ""
        click.echo(f"{feed.id}\t{slug}\t{state}\t{feed.url}\tlast success {last}{error}")


def _toggle(name: str, enabled: bool) -> None:
    @feeds_cli.command(name)
    @click.argument("feed_id", type=int)
    def command(feed_id: int) -> None:
        try:
            feed = services.set_enabled(feed_id, enabled)
        except FeedError as error:
            _fail(str(error))
        click.echo(f"feed {feed.id} {name}d: {feed.url}")

    command.__doc__ = f"{name.capitalize()} a feed (by its id, see `feeds list`)."


_toggle("enable", True)
_toggle("disable", False)


@feeds_cli.command("remove")
@click.argument("feed_id", type=int)
def remove_command(feed_id: int) -> None:
    """Remove a feed and its items (digests already made are kept)."""
    try:
        url = services.remove_feed(feed_id)
    except FeedError as error:
        _fail(str(error))
    click.echo(f"feed {feed_id} removed: {url}")


@digests_cli.command("run")
@click.option("--newsletter", "slug", default=None, help="Only this newsletter's digest.")
def run_command(slug: str | None) -> None:
    """Make now the digest of the items new since the last one; send it if the
    newsletter is in auto-send mode."""
    try:
        outcomes = digests.run_digests(slug)
    except DigestError as error:
        _fail(f"no digest made: {error}")
    if not outcomes:
        click.echo("no feed-based newsletter has feeds: add one with `feeds add SLUG URL`")
        return
    for outcome in outcomes:
        click.echo(outcome.describe())
