"""reports: consent_events.edition_id (which edition's link a withdrawal came from) and erasure_counts

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-03 08:00:00

The edition's report counts the readers who left from its links. An id without a
foreign key: reports keep counting after an edition is deleted, and a consent record
never blocks the deletion of an edition. erasure_counts keeps, per newsletter and week,
how many confirmed readers were erased (a number, nothing personal).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('consent_events') as batch:
        batch.add_column(sa.Column('edition_id', sa.Integer(), nullable=True))
        batch.create_index('ix_consent_events_edition_id', ['edition_id'])
    op.create_table(
        'erasure_counts',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('newsletter_id', sa.Integer(), nullable=False),
        sa.Column('week', sa.Date(), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_erasure_counts')),
        sa.UniqueConstraint('newsletter_id', 'week', name=op.f('uq_erasure_counts_newsletter_id_week')),
    )


def downgrade():
    op.drop_table('erasure_counts')
    with op.batch_alter_table('consent_events') as batch:
        batch.drop_index('ix_consent_events_edition_id')
        batch.drop_column('edition_id')
