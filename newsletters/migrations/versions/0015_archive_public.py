"""newsletters.archive_public: whether a newsletter's sent editions are on a public archive

Revision ID: 0015
Revises: 0010
Create Date: 2026-12-03 08:10:00

On by default for the newsletters offered on the public form, off for the others; an
administrator changes it on the newsletter's settings page.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade():
    # The table keeps AUTOINCREMENT on SQLite, should batch mode recreate it.
    with op.batch_alter_table(
        'newsletters', table_kwargs={'sqlite_autoincrement': True}
    ) as batch:
        batch.add_column(
            sa.Column('archive_public', sa.Boolean(), nullable=False, server_default=sa.true())
        )
    newsletters = sa.table(
        'newsletters', sa.column('archive_public', sa.Boolean), sa.column('is_public', sa.Boolean)
    )
    op.execute(newsletters.update().values(archive_public=newsletters.c.is_public))


def downgrade():
    # The table keeps AUTOINCREMENT on SQLite, should batch mode recreate it.
    with op.batch_alter_table(
        'newsletters', table_kwargs={'sqlite_autoincrement': True}
    ) as batch:
        batch.drop_column('archive_public')
