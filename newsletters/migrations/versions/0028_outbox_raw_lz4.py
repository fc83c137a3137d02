"""outbox messages' bodies compressed with lz4 on PostgreSQL (issue 17)

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-04 17:30:00

- PostgreSQL 14 or later, built with lz4: outbox_messages.raw is compressed with lz4
  instead of the default pglz. An import that invites 100 000 people writes 100 000
  messages of 6.7 kB; pglz compressing them was most of the server's time (20 000
  invitations measured in process: the server's CPU 3.1 s with pglz, 2.1 s with lz4).
  Values already stored stay as they are (each is read in the form it was written).
- SQLite, and PostgreSQL without lz4: nothing.
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0028'
down_revision = '0027'
branch_labels = None
depends_on = None


def _lz4_available(bind) -> bool:
    if bind.dialect.name != 'postgresql':
        return False
    return bool(
        bind.exec_driver_sql(
            "SELECT current_setting('server_version_num')::int >= 140000"
            " AND 'lz4' = ANY(enumvals) FROM pg_settings"
            " WHERE name = 'default_toast_compression'"
        ).scalar()
    )


def upgrade():
    if _lz4_available(op.get_bind()):
        op.execute("ALTER TABLE outbox_messages ALTER COLUMN raw SET COMPRESSION lz4")


def downgrade():
    if _lz4_available(op.get_bind()):
        op.execute("ALTER TABLE outbox_messages ALTER COLUMN raw SET COMPRESSION default")
