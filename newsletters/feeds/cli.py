"""`flask feeds ...` and `flask digests run`: each prints what it did and exits non-zero
with a clear message on bad input."""

from __future__ import annotations

import sys

import click
from flask.cli import AppGroup

from newsletters import events
from newsletters.catalog.services import newsletter_by_slug
from newsletters.feeds import digests, opml, services
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
    # The help is given here: click reads a command's docstring when it is made.
    @feeds_cli.command(name, help=f"{name.capitalize()} a feed (by its id, see `feeds list`).")
    @click.argument("feed_id", type=int)
    def command(feed_id: int) -> None:
        try:
            feed = services.set_enabled(feed_id, enabled)
        except FeedError as error:
            _fail(str(error))
        click.echo(f"feed {feed.id} {name}d: {feed.url}")


_toggle("enable", True)
_toggle("disable", False)


@feeds_cli.command("filter")
@click.argument("feed_id", type=int)
@click.option(
    "--include", multiple=True, help="Only items with one of these words (comma-separated)."
)
@click.option("--exclude", multiple=True, help="No items with these words (comma-separated).")
@click.option(
    "--categories", multiple=True, help="Only items in one of these categories (comma-separated)."
)
@click.option("--clear", is_flag=True, help="Remove the feed's filter: every item goes in.")
def filter_command(
    feed_id: int,
    include: tuple[str, ...],
    exclude: tuple[str, ...],
    categories: tuple[str, ...],
    clear: bool,
) -> None:
    """Set the filter of a feed (by its id, see `feeds list`): the words (in the title or
    summary, case-insensitive, also inside longer words; a word in quotation marks, as
    '"KL"', only whole) an item must or must not contain, its categories. The items
    already stored are judged again; those filtered out are kept."""
    if clear and (include or exclude or categories):
        _fail("give either --clear or the filter's words, not both")
    if not clear and not (include or exclude or categories):
        _fail("give --include, --exclude or --categories (or --clear to remove the filter)")
    try:
        outcome = services.set_filter(
            feed_id,
            include=include,
            exclude=exclude,
            categories=categories,
            split_lines=False,
            actor=events.CLI,
        )
    except FeedError as error:
        _fail(f"filter not changed: {error}")
    feed = outcome.feed
    if clear:
        click.echo(f"feed {feed.id} has no filter: every item goes into the digests")
    else:
        for name, stored in (
            ("include", feed.filter_include),
            ("exclude", feed.filter_exclude),
            ("categories", feed.filter_categories),
        ):
            if stored:
                click.echo(f"{name}: {', '.join(stored.splitlines())}")
    click.echo(
        f"feed {feed.id}: {outcome.passing} item(s) pass, {outcome.filtered_out} filtered out"
    )


@feeds_cli.command("position")
@click.argument("feed_id", type=int)
@click.argument("place", type=int)
def position_command(feed_id: int, place: int) -> None:
    """Set where the feed's section comes in a digest grouped by feed (PLACE from 0 to
    9999, lowest first; the same place: the feed added first comes first)."""
    try:
        services.set_positions({feed_id: place}, actor=events.CLI)
    except FeedError as error:
        _fail(f"place not changed: {error}")
    feed = services.get_feed(feed_id)
    order = [f.id for f in services.newsletter_feeds(feed.newsletter_id)]
    click.echo(
        f"feed {feed.id} has place {feed.position} in {feed.newsletter.slug}'s digest "
        f"(section {order.index(feed.id) + 1} of {len(order)})"
    )


@feeds_cli.command("export-opml")
@click.option("--newsletter", "slug", default=None, help="Only this newsletter's feeds.")
def export_opml_command(slug: str | None) -> None:
    """Print every feed as OPML (a folder per newsletter), for feed readers."""
    try:
        click.echo(services.export_opml(slug), nl=False)
    except FeedError as error:
        _fail(str(error))


@feeds_cli.command("import-opml")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option(
    "--newsletter",
    "slug",
    default=None,
    help="The newsletter every feed goes to. Without it, each feed goes to the newsletter "
    "its folder names (name or slug), as `feeds export-opml` writes them.",
)
def import_opml_command(file: str, slug: str | None) -> None:
    """Attach every feed of an OPML FILE ('-': standard input) to the newsletter SLUG,
    or to the newsletters its folders name. Each address is checked as `feeds add`
    checks it; a file with any bad feed is refused whole, and feeds a newsletter has
    already are left as they are."""
    try:
        with click.open_file(file, "rb") as handle:
            data = handle.read(opml.MAX_BYTES + 1)
    except OSError as error:
        _fail(f"cannot read {file}: {error.strerror or error}")
    try:
        outcome = services.import_opml(slug, data, by="cli", actor=events.CLI)
    except opml.OpmlError as error:
        click.echo(f"OPML file refused, no feed added ({len(error.errors)} problem(s)):", err=True)
        for line in error.errors:
            click.echo(f"  {line}", err=True)
        sys.exit(1)
    except FeedError as error:
        _fail(f"OPML file refused, no feed added: {error}")
    for feed in outcome.added:
        click.echo(f"feed {feed.id} added to {feed.newsletter.slug}: {feed.url}")
    for url in outcome.already:
        click.echo(f"already there: {url}")
    click.echo(f"{len(outcome.added)} feed(s) added, {len(outcome.already)} already there")


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


@digests_cli.command("preview")
@click.option("--newsletter", "slug", required=True, help="The newsletter's slug.")
def preview_command(slug: str) -> None:
    """Print the next digest of SLUG as it would be mailed if it were made now (its
    plain-text part); nothing is made or stored."""
    newsletter = newsletter_by_slug(slug)
    if newsletter is None:
        _fail(f"there is no newsletter '{slug}'")
    if not newsletter.is_feed_based:
        _fail(f"{slug} is not made from feeds (its digest is off in the staff pages)")
    preview = digests.preview_digest(newsletter)
    if preview.slot is not None:
        when = preview.slot.at.astimezone(digests.local_zone())
        click.echo(f"next digest: {when.isoformat(timespec='minutes')}")
    if preview.rendered is None:
        click.echo("no new items since the last digest: no edition would be made now")
        return
    click.echo(f"{preview.item_count} item(s); subject: {preview.rendered.subject}")
    click.echo("")
    click.echo(preview.rendered.text, nl=False)
