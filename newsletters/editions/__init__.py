"""Editions and durable sending: compose, preview, and send to everyone exactly once."""
