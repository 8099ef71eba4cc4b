"""The WSGI entry point of a checkout: ``gunicorn wsgi:app``, ``waitress-serve wsgi:app`` or any WSGI server.

Installed, the same app is ``signin.wsgi:app`` (see ``signin/wsgi.py``).
"""

from signin.wsgi import app, application

__all__ = ["app", "application"]
