"""staff sign-in by OpenID Connect: the provider's person on staff, invitations,
and how each session signed in

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-03 08:00:00

- staff.oidc_issuer/oidc_subject: the person at the provider (unique together), so a
  changed address never makes a second account; role_from_provider: the role follows
  the provider's claim.
- staff_invitations: addresses an administrator has let in with a role.
- staff_sessions.login_method: "password" or "oidc", shown in the list of sessions.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None


def upgrade():
    # Plain ADD COLUMNs and an index: SQLite keeps the table (and its AUTOINCREMENT).
    with op.batch_alter_table(
        'staff', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.add_column(sa.Column('oidc_issuer', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('oidc_subject', sa.String(length=255), nullable=True))
        batch_op.add_column(
            sa.Column(
                'role_from_provider', sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
        batch_op.create_index(
            'uq_staff_oidc_issuer_oidc_subject', ['oidc_issuer', 'oidc_subject'], unique=True
        )
    with op.batch_alter_table(
        'staff_sessions', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.add_column(
            sa.Column(
                'login_method', sa.String(length=20), nullable=False, server_default='password'
            )
        )
    op.create_table(
        'staff_invitations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('email', sa.String(length=320), nullable=False),
        sa.Column(
            'role',
            sa.Enum(
                'editor', 'admin', name='staff_role', native_enum=False,
                create_constraint=True, length=20,
            ),
            nullable=False,
        ),
        sa.Column('invited_by_id', sa.Integer(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['invited_by_id'], ['staff.id'],
            name=op.f('fk_staff_invitations_invited_by_id_staff'), ondelete='SET NULL',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_invitations')),
        sa.UniqueConstraint('email', name=op.f('uq_staff_invitations_email')),
    )


def downgrade():
    op.drop_table('staff_invitations')
    with op.batch_alter_table(
        'staff_sessions', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.drop_column('login_method')
    with op.batch_alter_table(
        'staff', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.drop_index('uq_staff_oidc_issuer_oidc_subject')
        batch_op.drop_column('role_from_provider')
        batch_op.drop_column('oidc_subject')
        batch_op.drop_column('oidc_issuer')
