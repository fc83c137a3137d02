"""The audit log: who changed data or sent mail from the staff pages, what, when, from where."""
