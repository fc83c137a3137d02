"""deliveries: no index on status, pages kept part empty, so sending updates are HOT

Revision ID: 0007
Revises: 0004
Create Date: 2026-11-30 00:05:00

Each message of a send updates its delivery twice (SENDING before the handover, SENT
after). With `status` in an index, PostgreSQL wrote a new entry in every index of the
table for both updates; without it, and with room left on each page (fillfactor), the
updates are heap-only (HOT). Workers find queued deliveries by primary key instead
(`sending.send_due` walks ids with a cursor). SQLite has no fillfactor; dropping the
index spares it the same index writes.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_edition_id_status')
    if op.get_bind().dialect.name == 'postgresql':
        # Applies to pages written from now on; existing deliveries are history.
        op.execute('ALTER TABLE deliveries SET (fillfactor = 50)')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE deliveries RESET (fillfactor)')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.create_index('ix_deliveries_edition_id_status', ['edition_id', 'status'], unique=False)
