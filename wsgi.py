"""WSGI entry point: `flask --app wsgi ...`, `gunicorn wsgi:app`, and, when
NEWSLETTERS_CELERY_BROKER_URL is set, `celery -A wsgi.celery worker --beat`."""

from newsletters import create_app

app = create_app()
celery = app.extensions.get("celery")
