"""subscriber search by part of an address or name, indexed (issue 17)

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-03 09:10:00

- PostgreSQL: the pg_trgm extension and GIN trigram indexes on subscribers.email and
  lower(subscribers.name), so `LIKE '%part%'` is an index lookup, not a scan of every row.
- SQLite: an FTS5 table with the trigram tokenizer (SQLite >= 3.34) over the address and
  name of every subscriber, an external-content table (it stores only the index; the text
  stays in subscribers), kept by triggers on insert, update and delete.

The extension is left in place on downgrade (other objects may use it).
Note for later migrations: a batch_alter_table that re-creates `subscribers` on SQLite
drops these triggers; such a migration must create them again (SQLITE_CREATE here).
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0024'
down_revision = '0023'
branch_labels = None
depends_on = None


SQLITE_CREATE = [
    "CREATE VIRTUAL TABLE subscribers_search USING fts5("
    "email, name, content='subscribers', content_rowid='id', tokenize='trigram')",
    "CREATE TRIGGER subscribers_search_insert AFTER INSERT ON subscribers BEGIN "
    "INSERT INTO subscribers_search(rowid, email, name) VALUES (new.id, new.email, new.name); "
    "END",
    "CREATE TRIGGER subscribers_search_delete AFTER DELETE ON subscribers BEGIN "
    "INSERT INTO subscribers_search(subscribers_search, rowid, email, name) "
    "VALUES ('delete', old.id, old.email, old.name); "
    "END",
    "CREATE TRIGGER subscribers_search_update AFTER UPDATE OF email, name ON subscribers BEGIN "
    "INSERT INTO subscribers_search(subscribers_search, rowid, email, name) "
    "VALUES ('delete', old.id, old.email, old.name); "
    "INSERT INTO subscribers_search(rowid, email, name) VALUES (new.id, new.email, new.name); "
    "END",
    "INSERT INTO subscribers_search(subscribers_search) VALUES ('rebuild')",
]

SQLITE_DROP = [
    "DROP TRIGGER IF EXISTS subscribers_search_update",
    "DROP TRIGGER IF EXISTS subscribers_search_delete",
    "DROP TRIGGER IF EXISTS subscribers_search_insert",
    "DROP TABLE IF EXISTS subscribers_search",
]


def upgrade():
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        op.execute(
            "CREATE INDEX ix_subscribers_email_trgm ON subscribers "
            "USING gin (email gin_trgm_ops)"
        )
        op.execute(
            "CREATE INDEX ix_subscribers_name_trgm ON subscribers "
            "USING gin (lower(name) gin_trgm_ops)"
        )
    elif dialect == 'sqlite':
        for statement in SQLITE_CREATE:
            op.execute(statement)


def downgrade():
    dialect = op.get_bind().dialect.name
    if dialect == 'postgresql':
        op.execute("DROP INDEX IF EXISTS ix_subscribers_name_trgm")
        op.execute("DROP INDEX IF EXISTS ix_subscribers_email_trgm")
    elif dialect == 'sqlite':
        for statement in SQLITE_DROP:
            op.execute(statement)
