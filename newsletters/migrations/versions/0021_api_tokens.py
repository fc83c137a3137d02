"""api_tokens, and the channel of a subscribe request

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-03 08:00:00

The REST API (issue 13) authenticates with bearer tokens: only a SHA-256 of each is
kept. A subscribe request now records the channel it came through (`method`: web_form,
or api:<token name>), so the consent record the worker writes for it names the API
token that asked; rows from before are the subscribe form's.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0021'
down_revision = '0020'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'api_tokens',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('token_hash', sa.String(length=64), nullable=False),
        sa.Column('scopes', sa.String(length=500), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(length=320), nullable=False),
        sa.Column('last_used_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('revoked_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_api_tokens')),
        sa.UniqueConstraint('name', name=op.f('uq_api_tokens_name')),
        sa.UniqueConstraint('token_hash', name=op.f('uq_api_tokens_token_hash')),
    )
    with op.batch_alter_table('subscribe_requests', schema=None) as batch_op:
        batch_op.add_column(sa.Column('method', sa.String(length=40), nullable=True))


def downgrade():
    with op.batch_alter_table('subscribe_requests', schema=None) as batch_op:
        batch_op.drop_column('method')
    op.drop_table('api_tokens')
