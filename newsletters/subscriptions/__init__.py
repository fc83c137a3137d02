"""The subscriber side: double opt-in, preference centre, unsubscribe, imports."""
