"""WSGI entry point: `flask --app wsgi ...`, `gunicorn wsgi:app`, and, when
NEWSLETTERS_CELERY_BROKER_URL is set, `celery -A wsgi.celery worker --beat`."""

import sys

from newsletters import ConfigurationError, create_app

try:
    app = create_app()
except ConfigurationError as error:
    # A setting the operator must fix: said in one line with a non-zero exit (the flask
    # CLI, gunicorn and celery all load this module), not as a Python traceback.
    sys.exit(f"newsletters: {error}")
celery = app.extensions.get("celery")
