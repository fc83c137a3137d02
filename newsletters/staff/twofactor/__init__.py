"""Two factors for staff accounts: TOTP (an authenticator app) and recovery codes."""
