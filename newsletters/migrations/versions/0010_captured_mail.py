"""captured_mail: every message of the embedded default, for the dev mailbox

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 14:00:00

Without a mail server the capture transport kept nothing, so an edition "sent" from
the staff pages was visible nowhere, and /dev/mail listed only outbox rows. The
capture transport now stores the bytes it would have handed to SMTP, for every kind
of mail, while DEV_MAILBOX is on.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'captured_mail',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('captured_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('envelope_from', sa.String(length=320), nullable=False),
        sa.Column('to_address', sa.String(length=320), nullable=False),
        sa.Column('raw', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_captured_mail')),
    )
    with op.batch_alter_table('captured_mail', schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f('ix_captured_mail_to_address'), ['to_address'], unique=False
        )


def downgrade():
    with op.batch_alter_table('captured_mail', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_captured_mail_to_address'))
    op.drop_table('captured_mail')
