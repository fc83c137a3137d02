"""Feeds and daily digests: RSS/Atom feeds attached to newsletters, fetched politely,
their items sanitised and de-duplicated, and turned into digest editions on each
newsletter's cadence."""
