"""reports: a finished send's figures kept, and consent records counted per day

Revision ID: 0025
Revises: 0024
Create Date: 2026-12-03 14:00:00

The report pages must answer in under 100 ms at 100 000 deliveries (issue 15); counting
the deliveries and the consent records on every view took up to a second.

- edition_send_summaries / edition_send_minutes (editions): a send's counts per outcome,
  possible duplicates, the range of its delivery ids and its messages per minute, written
  when it finishes (editions/summaries.py). Filled here for the sends already finished.
- consent_day_counts (subscriptions): consent records per newsletter, day (UTC), action
  and method, kept by triggers on consent_events (insert adds, delete takes off). On
  PostgreSQL statement triggers with transition tables (one grouped upsert per
  statement: an import of 100 000 records is one statement); on SQLite row triggers.
  Filled here from the records there are.

Note for later migrations: a batch_alter_table that re-creates `consent_events` on SQLite
drops these triggers; such a migration must create them again (SQLITE_TRIGGERS here).
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0025'
down_revision = '0024'
branch_labels = None
depends_on = None


SQLITE_DAY = "CAST(julianday({}) - 2440587.5 AS INTEGER)"
PG_DAY = "floor(extract(epoch FROM {}) / 86400)::integer"

SQLITE_TRIGGERS = [
    "CREATE TRIGGER consent_day_counts_insert AFTER INSERT ON consent_events BEGIN "
    "INSERT INTO consent_day_counts (newsletter_id, day, action, method, count) "
    f"SELECT newsletter_id, {SQLITE_DAY.format('new.at')}, new.action, new.method, 1 "
    "FROM subscriptions WHERE id = new.subscription_id "
    "ON CONFLICT (newsletter_id, day, action, method) DO UPDATE SET count = count + 1; "
    "END",
    "CREATE TRIGGER consent_day_counts_delete AFTER DELETE ON consent_events BEGIN "
    "UPDATE consent_day_counts SET count = count - 1 "
    "WHERE newsletter_id = (SELECT newsletter_id FROM subscriptions "
    "WHERE id = old.subscription_id) "
    f"AND day = {SQLITE_DAY.format('old.at')} AND action = old.action AND method = old.method; "
    "END",
]

PG_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION consent_day_counts_add() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "INSERT INTO consent_day_counts AS c (newsletter_id, day, action, method, count) "
    f"SELECT s.newsletter_id, {PG_DAY.format('n.at')}, n.action, n.method, count(*) "
    "FROM new_rows n JOIN subscriptions s ON s.id = n.subscription_id "
    "GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4 "
    "ON CONFLICT (newsletter_id, day, action, method) "
    "DO UPDATE SET count = c.count + EXCLUDED.count; "
    "RETURN NULL; END $$",
    "CREATE OR REPLACE FUNCTION consent_day_counts_take() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "UPDATE consent_day_counts c SET count = c.count - o.n FROM ("
    f"SELECT s.newsletter_id, {PG_DAY.format('o.at')} AS day, o.action, o.method, "
    "count(*) AS n FROM old_rows o JOIN subscriptions s ON s.id = o.subscription_id "
    "GROUP BY 1, 2, 3, 4) o "
    "WHERE c.newsletter_id = o.newsletter_id AND c.day = o.day "
    "AND c.action = o.action AND c.method = o.method; "
    "RETURN NULL; END $$",
    "CREATE TRIGGER consent_day_counts_insert AFTER INSERT ON consent_events "
    "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION consent_day_counts_add()",
    "CREATE TRIGGER consent_day_counts_delete AFTER DELETE ON consent_events "
    "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT "
    "EXECUTE FUNCTION consent_day_counts_take()",
]


def upgrade():
    postgresql = op.get_bind().dialect.name == 'postgresql'
    op.create_table(
        'edition_send_summaries',
        sa.Column('edition_id', sa.Integer(), nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        sa.Column('failed', sa.Integer(), nullable=False),
        sa.Column('skipped', sa.Integer(), nullable=False),
        sa.Column('cancelled', sa.Integer(), nullable=False),
        sa.Column('possible_duplicates', sa.Integer(), nullable=False),
        sa.Column('first_delivery_id', sa.Integer(), nullable=True),
        sa.Column('last_delivery_id', sa.Integer(), nullable=True),
        sa.Column('summarised_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ['edition_id'], ['editions.id'],
            name=op.f('fk_edition_send_summaries_edition_id_editions'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('edition_id', name=op.f('pk_edition_send_summaries')),
    )
    op.create_table(
        'edition_send_minutes',
        sa.Column('edition_id', sa.Integer(), nullable=False),
        sa.Column('minute', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('sent', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ['edition_id'], ['editions.id'],
            name=op.f('fk_edition_send_minutes_edition_id_editions'), ondelete='CASCADE',
        ),
        sa.PrimaryKeyConstraint('edition_id', 'minute', name=op.f('pk_edition_send_minutes')),
    )
    op.create_table(
        'consent_day_counts',
        sa.Column('newsletter_id', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('day', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('action', sa.String(length=20), nullable=False),
        sa.Column('method', sa.String(length=40), nullable=False),
        sa.Column('count', sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            'newsletter_id', 'day', 'action', 'method', name=op.f('pk_consent_day_counts')
        ),
    )

    day = PG_DAY if postgresql else SQLITE_DAY
    minute = (
        "floor(extract(epoch FROM d.sent_at) / 60)::integer"
        if postgresql
        else "CAST(strftime('%s', d.sent_at) AS INTEGER) / 60"
    )
    # The figures of the sends finished before this migration, as summaries.summarise
    # counts them when a send finishes.
    op.execute(
        "INSERT INTO edition_send_summaries (edition_id, sent, failed, skipped, cancelled, "
        "possible_duplicates, first_delivery_id, last_delivery_id, summarised_at) "
        "SELECT d.edition_id, "
        "sum(CASE WHEN d.status = 'sent' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN d.status = 'failed' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN d.status = 'skipped' THEN 1 ELSE 0 END), "
        "sum(CASE WHEN d.status = 'cancelled' THEN 1 ELSE 0 END), "
        "sum(d.possible_duplicates), min(d.id), max(d.id), CURRENT_TIMESTAMP "
        "FROM deliveries d JOIN editions e ON e.id = d.edition_id "
        "WHERE e.status = 'sent' GROUP BY d.edition_id"
    )
    op.execute(
        "INSERT INTO edition_send_minutes (edition_id, minute, sent) "
        f"SELECT d.edition_id, {minute}, count(*) "
        "FROM deliveries d JOIN editions e ON e.id = d.edition_id "
        "WHERE e.status = 'sent' AND d.sent_at IS NOT NULL "
        f"GROUP BY d.edition_id, {minute}"
    )
    op.execute(
        "INSERT INTO consent_day_counts (newsletter_id, day, action, method, count) "
        f"SELECT s.newsletter_id, {day.format('e.at')}, e.action, e.method, count(*) "
        "FROM consent_events e JOIN subscriptions s ON s.id = e.subscription_id "
        "GROUP BY 1, 2, 3, 4"
    )
    for statement in PG_TRIGGERS if postgresql else SQLITE_TRIGGERS:
        op.execute(statement)


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("DROP TRIGGER IF EXISTS consent_day_counts_delete ON consent_events")
        op.execute("DROP TRIGGER IF EXISTS consent_day_counts_insert ON consent_events")
        op.execute("DROP FUNCTION IF EXISTS consent_day_counts_take()")
        op.execute("DROP FUNCTION IF EXISTS consent_day_counts_add()")
    else:
        op.execute("DROP TRIGGER IF EXISTS consent_day_counts_delete")
        op.execute("DROP TRIGGER IF EXISTS consent_day_counts_insert")
    op.drop_table('consent_day_counts')
    op.drop_table('edition_send_minutes')
    op.drop_table('edition_send_summaries')
