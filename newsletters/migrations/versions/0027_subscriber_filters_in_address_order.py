"""subscriber filters in address order: (municipality, email, role) and (role, email) indexes; finer statistics of the address on PostgreSQL

Revision ID: 0027
Revises: 0026
Create Date: 2026-12-04 17:00:00

The staff's subscriber list filtered by municipality or role is shown in address order,
50 at a time (issue 17: < 50 ms at 1 000 000 subscribers). With an index on the column
alone the database read every matching row and sorted them for each page: a role held by
one in seven subscribers was 140 000 rows (about 100 ms on SQLite, more under load; on
PostgreSQL a municipality's 10 000 rows read from the table, 45 ms). With the address
as the second column the page is a walk of the index that stops after 51 entries, and
the capped count reads the same index. The role in the municipality's index answers both
filters together without reading the table (admin.services checks the role on the
municipality's entries: 2 ms at 1 000 000 on SQLite, 370 ms through the role's index).
The indexes on the column alone go: the new ones lead with the same column, so every
lookup by municipality or role alone (the edition segments, the walk of the distinct
roles) is served as before.

Created on both databases: both planners use them for the page and for the count.

PostgreSQL only: the address's statistics target goes from 100 to 1000. The search's
plan (walk the address index in order and stop at the page's end, or take the trigram
index's matches and sort them) is chosen from the planner's estimate of how many
addresses hold the term, which for `LIKE '%term%'` is the share of the column's
histogram entries that hold it. With 100 entries a term in 1 % of the addresses
(`aarhus.dk`, `@kl.dk`) is in none of them as often as not, estimated at 100 rows, and
its 9 000 matches are read and sorted (11-39 ms at 1 000 000) where the walk would stop
after 5 500 (4 ms); which plan a database got changed from one ANALYZE to the next. With
1000 entries such a term is found in about ten. ANALYZE samples 300 000 rows instead of
30 000 (3 s at 1 000 000). SQLite keeps no statistics here (the search chooses for it).
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0027'
down_revision = '0026'
branch_labels = None
depends_on = None


def upgrade():
    op.create_index(
        'ix_subscribers_municipality_email_role',
        'subscribers',
        ['municipality', 'email', 'role'],
        unique=False,
    )
    op.create_index('ix_subscribers_role_email', 'subscribers', ['role', 'email'], unique=False)
    op.drop_index('ix_subscribers_municipality', table_name='subscribers')
    op.drop_index('ix_subscribers_role', table_name='subscribers')
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE subscribers ALTER COLUMN email SET STATISTICS 1000")


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("ALTER TABLE subscribers ALTER COLUMN email SET STATISTICS -1")
    op.create_index('ix_subscribers_role', 'subscribers', ['role'], unique=False)
    op.create_index('ix_subscribers_municipality', 'subscribers', ['municipality'], unique=False)
    op.drop_index('ix_subscribers_role_email', table_name='subscribers')
    op.drop_index('ix_subscribers_municipality_email_role', table_name='subscribers')
