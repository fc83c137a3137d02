"""Mail: composing RFC 5322 messages, the durable outbox, and the delivery worker."""
