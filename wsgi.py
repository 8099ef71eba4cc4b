"""The WSGI entry point: ``waitress-serve wsgi:app`` or any WSGI server."""

from signin import create_app, prepare_to_serve

app = create_app()
prepare_to_serve(app)
