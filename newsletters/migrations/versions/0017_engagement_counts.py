"""engagement: counting opens and clicks per edition and link, off by default

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-03 08:10:00

newsletters.engagement_counting (false for every newsletter), edition_links (each link
address an edition contains, with its click count; a counted link names the row, so it
leads nowhere else) and edition_opens (one count per edition). Nothing per person.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade():
    # The table keeps AUTOINCREMENT on SQLite, should batch mode recreate it.
    with op.batch_alter_table(
        'newsletters', table_kwargs={'sqlite_autoincrement': True}
    ) as batch:
        batch.add_column(
            sa.Column(
                'engagement_counting', sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )
    op.create_table(
        'edition_links',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('edition_id', sa.Integer(), nullable=False),
        sa.Column('url_hash', sa.String(length=64), nullable=False),
        sa.Column('url', sa.Text(), nullable=False),
        sa.Column('clicks', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['edition_id'], ['editions.id'],
            name=op.f('fk_edition_links_edition_id_editions'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_edition_links')),
        sa.UniqueConstraint(
            'edition_id', 'url_hash', name=op.f('uq_edition_links_edition_id_url_hash')
        ),
    )
    op.create_table(
        'edition_opens',
        sa.Column('edition_id', sa.Integer(), nullable=False),
        sa.Column('opens', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['edition_id'], ['editions.id'],
            name=op.f('fk_edition_opens_edition_id_editions'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('edition_id', name=op.f('pk_edition_opens')),
    )


def downgrade():
    op.drop_table('edition_opens')
    op.drop_table('edition_links')
    # The table keeps AUTOINCREMENT on SQLite, should batch mode recreate it.
    with op.batch_alter_table(
        'newsletters', table_kwargs={'sqlite_autoincrement': True}
    ) as batch:
        batch.drop_column('engagement_counting')
