"""Outgoing webhooks: signed calls to other systems when subscriptions, bounces and sends change."""
