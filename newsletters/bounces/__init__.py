"""Bounces and list hygiene: reading bounce mail, the suppression list, purging stale
pending subscriptions."""
