"""feeds that editors steer: filters per feed, filtered-out items, sections

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-03 09:10:00

- feeds.filter_include/filter_exclude/filter_categories: a feed's filter (one word a
  line); feeds.position: where its section comes in a digest grouped by feed.
- feed_items.categories (one a line) and feed_items.filtered_out (left out of digests
  by the feed's filter, computed at fetch time and when the filter changes).
- newsletters.digest_sections: group a digest's items by feed.
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0023'
down_revision = '0022'
branch_labels = None
depends_on = None


def _text(name):
    return sa.Column(name, sa.Text(), server_default='', nullable=False)


def _flag(name):
    return sa.Column(name, sa.Boolean(), server_default=sa.false(), nullable=False)


def upgrade():
    # A default that is an expression (sa.false()) makes SQLite's batch mode recreate the
    # table: keep newsletters' AUTOINCREMENT, so that ids are never handed out again.
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.add_column(_text('filter_include'))
        batch_op.add_column(_text('filter_exclude'))
        batch_op.add_column(_text('filter_categories'))
        batch_op.add_column(sa.Column('position', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('feed_items', schema=None) as batch_op:
        batch_op.add_column(_text('categories'))
        batch_op.add_column(_flag('filtered_out'))
    with op.batch_alter_table('newsletters', schema=None,
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.add_column(_flag('digest_sections'))


def downgrade():
    # Dropping a column makes SQLite's batch mode recreate the table: keep AUTOINCREMENT.
    with op.batch_alter_table('newsletters', schema=None,
                              table_kwargs={'sqlite_autoincrement': True}) as batch_op:
        batch_op.drop_column('digest_sections')
    with op.batch_alter_table('feed_items', schema=None) as batch_op:
        batch_op.drop_column('filtered_out')
        batch_op.drop_column('categories')
    with op.batch_alter_table('feeds', schema=None) as batch_op:
        batch_op.drop_column('position')
        batch_op.drop_column('filter_categories')
        batch_op.drop_column('filter_exclude')
        batch_op.drop_column('filter_include')
