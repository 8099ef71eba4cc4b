"""The WSGI entry point: ``waitress-serve wsgi:app`` or any WSGI server."""

from signin import create_app, freeze_startup_heap

app = create_app()
freeze_startup_heap()
