"""editions.segment: the part of a newsletter's readers an edition is sent to

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-03 09:10:00

The segment in its canonical spelling (editions/segments.py), e.g.
`region=Hovedstaden AND role=borgmester`; NULL sends to every confirmed reader.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0022'
down_revision = '0021'
branch_labels = None
depends_on = None


def upgrade():
    # A plain ADD COLUMN: SQLite keeps the table, its AUTOINCREMENT and the trigger that
    # deletes an edition's deliveries (migration 0007).
    op.add_column('editions', sa.Column('segment', sa.Text(), nullable=True))


def downgrade():
    # DROP COLUMN in place (SQLite 3.35 and later), not batch mode's copy of the table,
    # which would lose the trigger on editions.
    op.drop_column('editions', 'segment')
