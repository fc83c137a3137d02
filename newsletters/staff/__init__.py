"""KL's staff: editors and administrators, their accounts, login and sessions."""
