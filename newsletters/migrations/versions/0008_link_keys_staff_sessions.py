"""link keys, ids never reused, staff sessions, login throttle

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02 13:45:00

- subscribers.link_key: a random key per subscriber (existing rows get one each here),
  carried by every signed link instead of the countable row id.
- SQLite handed out the highest id again after its row was deleted; subscribers, staff,
  editions and newsletters (whose ids appear in links, tokens, sessions and the audit
  log) are rebuilt with AUTOINCREMENT. PostgreSQL sequences never go back already.
  Rebuilding drops a table's triggers, so 0007's delete triggers are made again.
  (env.py turns SQLite's foreign-key enforcement off while migrating: dropping the old
  parent table would otherwise cascade into its children.)
- staff_sessions: one row per staff login, so the server can end it.
- login_throttle: failed staff logins per account and source.
"""
import secrets

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


_REBUILT = ('newsletters', 'staff', 'editions')
# 0007's triggers on tables rebuilt here (SQLite only: PostgreSQL alters in place).
_DELIVERY_TRIGGERS = (('editions', 'edition_id'), ('subscribers', 'subscriber_id'))


def _sqlite() -> bool:
    return op.get_bind().dialect.name == 'sqlite'


def _delivery_triggers() -> None:
    for table, column in _DELIVERY_TRIGGERS:
        op.execute(f'DROP TRIGGER IF EXISTS trg_{table}_delete_deliveries')
        op.execute(
            f"""CREATE TRIGGER trg_{table}_delete_deliveries AFTER DELETE ON {table}
            FOR EACH ROW BEGIN
                DELETE FROM deliveries WHERE {column} = OLD.id;
            END"""
        )


def _give_link_keys() -> None:
    bind = op.get_bind()
    ids = [row[0] for row in bind.execute(sa.text('SELECT id FROM subscribers'))]
    update = sa.text('UPDATE subscribers SET link_key = :key WHERE id = :id')
    for start in range(0, len(ids), 5000):
        bind.execute(
            update,
            [{'key': secrets.token_urlsafe(16), 'id': id_} for id_ in ids[start:start + 5000]],
        )


def upgrade():
    sqlite = _sqlite()
    with op.batch_alter_table('subscribers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('link_key', sa.String(length=32), nullable=True))
    _give_link_keys()
    with op.batch_alter_table(
        'subscribers',
        schema=None,
        recreate='always' if sqlite else 'auto',
        table_kwargs={'sqlite_autoincrement': True},
    ) as batch_op:
        batch_op.alter_column('link_key', existing_type=sa.String(length=32), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_subscribers_link_key'), ['link_key'])
    if sqlite:
        for table in _REBUILT:
            with op.batch_alter_table(
                table, recreate='always', table_kwargs={'sqlite_autoincrement': True}
            ):
                pass
        _delivery_triggers()

    op.create_table('staff_sessions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('secret_hash', sa.String(length=64), nullable=False),
    sa.Column('staff_id', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('last_seen_at', sa.DateTime(timezone=True), nullable=False),
    sa.Column('ip', sa.String(length=64), nullable=True),
    sa.Column('user_agent', sa.String(length=512), nullable=False),
    sa.Column('ended_at', sa.DateTime(timezone=True), nullable=True),
    sa.Column('end_reason', sa.String(length=40), nullable=True),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_staff_sessions_staff_id_staff'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_sessions')),
    sa.UniqueConstraint('secret_hash', name=op.f('uq_staff_sessions_secret_hash')),
    sqlite_autoincrement=True,
    )
    op.create_index('ix_staff_sessions_staff_id_ended_at', 'staff_sessions', ['staff_id', 'ended_at'], unique=False)
    op.create_table('login_throttle',
    sa.Column('account_key', sa.String(length=64), nullable=False),
    sa.Column('source', sa.String(length=100), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('last_failure_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('account_key', 'source', name=op.f('pk_login_throttle')),
    )
    op.create_index(op.f('ix_login_throttle_last_failure_at'), 'login_throttle', ['last_failure_at'], unique=False)


def downgrade():
    sqlite = _sqlite()
    op.drop_index(op.f('ix_login_throttle_last_failure_at'), table_name='login_throttle')
    op.drop_table('login_throttle')
    op.drop_index('ix_staff_sessions_staff_id_ended_at', table_name='staff_sessions')
    op.drop_table('staff_sessions')
    # The ids keep their AUTOINCREMENT on SQLite: handing out used ids again is the very
    # bug this revision closed, and nothing before it depends on ids being reused.
    with op.batch_alter_table(
        'subscribers', schema=None, table_kwargs={'sqlite_autoincrement': True}
    ) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_subscribers_link_key'), type_='unique')
        batch_op.drop_column('link_key')
    if sqlite:
        _delivery_triggers()
