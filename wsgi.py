"""WSGI entry point: `flask --app wsgi ...` and `gunicorn wsgi:app`."""

from newsletters import create_app

app = create_app()
