"""subscribers.email compared byte by byte on PostgreSQL (COLLATE "C")

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-04 18:30:00

In a database made with a Danish collation (a municipality's server set up with
da_DK.UTF-8, or ICU da-DK), "aa" sorts as "å" at the end of the alphabet. The search by
the first one or two characters of an address walks a range of the address's index
(`term <= email < term || U+10FFFF`), so "a" missed every "aarhus..." address, and the
list's order of addresses was not the order SQLite shows. With COLLATE "C" the column
(and its unique index, the trigram index and the filters' indexes, rebuilt by the
change) compares addresses byte by byte on every server, as SQLite does. The addresses
are lower-cased ASCII or IDNA for the most part; byte order is their natural order.

SQLite: nothing (it compares bytes already).
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0030'
down_revision = '0029'
branch_labels = None
depends_on = None


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute('ALTER TABLE subscribers ALTER COLUMN email TYPE VARCHAR(320) COLLATE "C"')


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute(
            'ALTER TABLE subscribers ALTER COLUMN email TYPE VARCHAR(320) COLLATE "default"'
        )
