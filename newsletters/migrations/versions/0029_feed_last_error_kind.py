"""feeds.last_error_kind: why the last fetch failed, for the pages to say in their language

Revision ID: 0029
Revises: 0028
Create Date: 2026-12-04 17:30:00

- feeds.last_error_kind: the kind of the last failure (newsletters.feeds.fetching.
  FetchErrorKind: unreachable, http_status, too_large, too_many_redirects, not_a_feed,
  failed, gone); feeds.last_error keeps the English detail for the CLI and the log.

Upgrade sorts the errors stored so far by the English the fetcher wrote, so that the
feeds page can say them in Danish at once; downgrade drops the column.
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0029'
down_revision = '0028'
branch_labels = None
depends_on = None

feeds = sa.table(
    'feeds',
    sa.column('last_error', sa.Text),
    sa.column('last_error_kind', sa.String),
    sa.column('enabled', sa.Boolean),
    sa.column('last_status', sa.Integer),
)

# As newsletters/feeds/fetching.py and services.py worded them when this was written
# (copied, not imported: this migration must do the same whatever the code becomes).
KINDS = [
    ('gone', feeds.c.last_error.like('410 Gone%')),
    ('http_status', feeds.c.last_error.like('HTTP %')),
    ('unreachable', feeds.c.last_error.like('the server could not be reached%')),
    ('too_large', feeds.c.last_error.like('the feed is too large%')),
    ('too_many_redirects', feeds.c.last_error.like('more than % redirects')),
    ('not_a_feed', feeds.c.last_error.like('not an RSS or Atom feed%')),
    ('not_a_feed', feeds.c.last_error.like('could not be parsed%')),
]


def upgrade():
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('last_error_kind', sa.String(length=30), nullable=True))
    bind = op.get_bind()
    unsorted = feeds.c.last_error.is_not(None) & feeds.c.last_error_kind.is_(None)
    for kind, matches in KINDS:
        bind.execute(feeds.update().where(unsorted & matches).values(last_error_kind=kind))
    bind.execute(feeds.update().where(unsorted).values(last_error_kind='failed'))


def downgrade():
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.drop_column('last_error_kind')
