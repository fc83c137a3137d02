"""deliveries: cheap to start and to send (no status index, no foreign-key checks)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 00:05:00

Each message of a send updates its delivery twice (SENDING before the handover, SENT
after). With `status` in an index, PostgreSQL wrote a new entry in every index of the
table for both updates; without it, and with room left on each page (fillfactor), the
updates are heap-only (HOT). Workers find queued deliveries by primary key instead
(`sending.send_due` walks ids in bounded windows from the edition's new
`first_delivery_id`).

Starting a send inserts a delivery per recipient; the two foreign keys made PostgreSQL
run two trigger checks per row, 60 % of the INSERT ... SELECT for 100 000 recipients.
Deliveries are only inserted from a join with subscribers, for an edition locked by
the sender, so the checks are replaced by what ON DELETE CASCADE did: triggers that
delete the deliveries of a deleted subscriber or edition.
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


_FOREIGN_KEYS = (
    ('fk_deliveries_edition_id_editions', 'editions', 'edition_id'),
    ('fk_deliveries_subscriber_id_subscribers', 'subscribers', 'subscriber_id'),
)


def upgrade():
    with op.batch_alter_table('editions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('first_delivery_id', sa.Integer(), nullable=True))
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_deliveries_edition_id_status')
        for name, _table, _column in _FOREIGN_KEYS:
            batch_op.drop_constraint(name, type_='foreignkey')
    postgresql = op.get_bind().dialect.name == 'postgresql'
    if postgresql:
        # Applies to pages written from now on.
        op.execute('ALTER TABLE deliveries SET (fillfactor = 50)')
    for _name, table, column in _FOREIGN_KEYS:
        if postgresql:
            # OR REPLACE: a function outlives the tables a test fixture drops.
            op.execute(
                f"""CREATE OR REPLACE FUNCTION deliveries_follow_{table}() RETURNS trigger
                LANGUAGE plpgsql AS $$
                BEGIN
                    DELETE FROM deliveries WHERE {column} = OLD.id;
                    RETURN OLD;
                END $$"""
            )
            op.execute(
                f"""CREATE TRIGGER trg_{table}_delete_deliveries AFTER DELETE ON {table}
                FOR EACH ROW EXECUTE FUNCTION deliveries_follow_{table}()"""
            )
        else:
            op.execute(
                f"""CREATE TRIGGER trg_{table}_delete_deliveries AFTER DELETE ON {table}
                FOR EACH ROW BEGIN
                    DELETE FROM deliveries WHERE {column} = OLD.id;
                END"""
            )


def downgrade():
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for _name, table, _column in _FOREIGN_KEYS:
        op.execute(f'DROP TRIGGER trg_{table}_delete_deliveries' + (f' ON {table}' if postgresql else ''))
        if postgresql:
            op.execute(f'DROP FUNCTION deliveries_follow_{table}()')
    if postgresql:
        op.execute('ALTER TABLE deliveries RESET (fillfactor)')
    with op.batch_alter_table('deliveries', schema=None) as batch_op:
        for name, table, column in _FOREIGN_KEYS:
            batch_op.create_foreign_key(name, table, [column], ['id'], ondelete='CASCADE')
        batch_op.create_index('ix_deliveries_edition_id_status', ['edition_id', 'status'], unique=False)
    with op.batch_alter_table('editions', schema=None) as batch_op:
        batch_op.drop_column('first_delivery_id')
