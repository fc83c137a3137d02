"""outbox messages written when they are sent: outbox_messages.fills (issue 17)

Revision ID: 0031
Revises: 0030
Create Date: 2026-12-04 21:00:00

- outbox_messages.fills (JSON text): what is personal in a mail whose bytes its kind's
  composer writes when it is sent (newsletters/mailing/deferred.py); an import's
  invitations are queued so (100 000 rows of 0.2 kB, not 670 MB of whole messages).
- outbox_messages.raw may now be NULL, for such a row; a row has raw or fills
  (ck_outbox_messages_raw_or_fills).

Downgrade writes no message: it refuses while a row without raw is waiting, so that
no invitation is lost; send them first (`flask worker --once`).
"""
import sqlalchemy as sa
from alembic import op


# revision identifiers, used by Alembic.
revision = '0031'
down_revision = '0030'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('outbox_messages') as batch:
        batch.add_column(sa.Column('fills', sa.Text(), nullable=True))
        batch.alter_column('raw', existing_type=sa.Text(), nullable=True)
        batch.create_check_constraint(op.f('ck_outbox_messages_raw_or_fills'), 'raw IS NOT NULL OR fills IS NOT NULL')


def downgrade():
    waiting = op.get_bind().exec_driver_sql(
        "SELECT count(*) FROM outbox_messages WHERE raw IS NULL"
    ).scalar()
    if waiting:
        raise RuntimeError(
            f"{waiting} outbox message(s) are written only when they are sent;"
            " send them (flask worker --once) before this downgrade"
        )
    with op.batch_alter_table('outbox_messages') as batch:
        batch.drop_constraint(op.f('ck_outbox_messages_raw_or_fills'), type_='check')
        batch.alter_column('raw', existing_type=sa.Text(), nullable=False)
        batch.drop_column('fills')
