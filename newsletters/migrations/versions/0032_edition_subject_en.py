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
import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0032'
down_revision = '0031'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('editions') as batch:
        batch.add_column(sa.Column('subject_en', sa.String(length=300), nullable=True))


def downgrade():
    with op.batch_alter_table('editions') as batch:
        batch.drop_column('subject_en')
