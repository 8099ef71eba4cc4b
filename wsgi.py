"""The WSGI entry point: ``waitress-serve wsgi:app`` or any WSGI server."""

from signin import create_app, freeze_startup_heap, passwords

app = create_app()
passwords.warm_up(app.config["SIGNIN_PASSWORD_METHOD"])
freeze_startup_heap()
