"""two factors and rights per newsletter for staff

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-03 08:00:00

- staff: the TOTP secret, when it was confirmed, and the last time step used (a code
  is accepted once).
- staff_recovery_codes: ten single-use codes per account, hashed.
- staff_newsletters: the newsletters an editor is limited to; none = every newsletter,
  as before.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0019'
down_revision = '0018'
branch_labels = None
depends_on = None


def upgrade():
    # Nullable columns: SQLite adds them in place (the table keeps AUTOINCREMENT).
    with op.batch_alter_table(
        'staff', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.add_column(sa.Column('totp_secret', sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column('totp_enabled_at', sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(sa.Column('totp_last_counter', sa.Integer(), nullable=True))

    op.create_table(
        'staff_recovery_codes',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('staff_id', sa.Integer(), nullable=False),
        sa.Column('code_hash', sa.String(length=64), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('used_at', sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ['staff_id'], ['staff.id'],
            name=op.f('fk_staff_recovery_codes_staff_id_staff'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_recovery_codes')),
        sa.UniqueConstraint(
            'staff_id', 'code_hash', name=op.f('uq_staff_recovery_codes_staff_id_code_hash')
        ),
    )
    with op.batch_alter_table('staff_recovery_codes', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_staff_recovery_codes_staff_id'), ['staff_id'], unique=False
        )

    op.create_table(
        'staff_newsletters',
        sa.Column('staff_id', sa.Integer(), nullable=False),
        sa.Column('newsletter_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['staff_id'], ['staff.id'],
            name=op.f('fk_staff_newsletters_staff_id_staff'), ondelete='CASCADE',
        ),
        sa.ForeignKeyConstraint(
            ['newsletter_id'], ['newsletters.id'],
            name=op.f('fk_staff_newsletters_newsletter_id_newsletters'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('staff_id', 'newsletter_id', name=op.f('pk_staff_newsletters')),
    )
    with op.batch_alter_table('staff_newsletters', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_staff_newsletters_newsletter_id'), ['newsletter_id'], unique=False
        )


def downgrade():
    with op.batch_alter_table('staff_newsletters', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_newsletters_newsletter_id'))
    op.drop_table('staff_newsletters')
    with op.batch_alter_table('staff_recovery_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_staff_recovery_codes_staff_id'))
    op.drop_table('staff_recovery_codes')
    # Dropping columns makes SQLite rebuild the table: keep its AUTOINCREMENT.
    with op.batch_alter_table(
        'staff', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.drop_column('totp_last_counter')
        batch_op.drop_column('totp_enabled_at')
        batch_op.drop_column('totp_secret')
