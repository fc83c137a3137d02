"""editions.subject_en: the subject English readers get, where the edition has one

Revision ID: 0032
Revises: 0031
Create Date: 2026-12-05 01:00:00

A digest's subject carries its date ("KL's daglige nyhedsbreve 4. december 2026"), and a
reader whose language is English got the Danish date in the subject and the heading of
an otherwise English mail. A digest now stores the English form beside it ("... December
4, 2026"). An edition an editor writes has none (NULL): every reader gets its one
subject, as before.
"""
import sqlite3

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0032'
down_revision = '0031'
branch_labels = None
depends_on = None


def upgrade():
    op.add_column('editions', sa.Column('subject_en', sa.String(length=300), nullable=True))


def downgrade():
    # ALTER TABLE ... DROP COLUMN on both (SQLite 3.35 and later), not a batch copy of the
    # table: a copy would lose SQLite's AUTOINCREMENT counter, and ids of editions
    # deleted since would be handed out again.
    bind = op.get_bind()
    if bind.dialect.name == 'sqlite' and sqlite3.sqlite_version_info < (3, 35):
        with op.batch_alter_table('editions') as batch:
            batch.drop_column('subject_en')
        return
    op.execute('ALTER TABLE editions DROP COLUMN subject_en')
