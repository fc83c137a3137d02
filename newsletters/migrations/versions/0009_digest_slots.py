"""digest slots: a catch-up window, skipped slots recorded, a schedule's start

A scheduled digest goes at its hour or within DIGEST_CATCH_UP_MINUTES after it; a slot
missed by more is recorded as a digest run with `skipped` set (and no cutoff: it
digested nothing), so the database's uniqueness on (newsletter, number) and
(newsletter, slot) keeps a late builder and the scheduler that skips the slot apart.
`slot_at` is the slot's instant; `newsletters.digest_schedule_from` is when the
schedule began, before which no slot was due.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 14:00:00

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('digest_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('slot_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('skipped', sa.Enum('missed', 'feeds_not_fetched', name='skip_reason', native_enum=False, create_constraint=True, length=20), nullable=True))
        batch_op.alter_column('cutoff', existing_type=sa.DateTime(timezone=True), nullable=True)

    with op.batch_alter_table('newsletters', schema=None) as batch_op:
        batch_op.add_column(sa.Column('digest_schedule_from', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    # Not batch mode: on SQLite that would copy and drop the table `newsletters`, and
    # with foreign keys on, dropping it deletes every row that refers to it. A plain
    # DROP COLUMN (SQLite 3.35+) leaves them alone.
    op.execute('ALTER TABLE newsletters DROP COLUMN digest_schedule_from')

    # Skipped slots digested nothing; without the column they would read as digests.
    op.execute("DELETE FROM digest_runs WHERE skipped IS NOT NULL")
    with op.batch_alter_table('digest_runs', schema=None) as batch_op:
        batch_op.alter_column('cutoff', existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.drop_constraint(op.f('ck_digest_runs_skip_reason'), type_='check')
        batch_op.drop_column('skipped')
        batch_op.drop_column('slot_at')
