"""The WSGI entry point inside the package, for any WSGI server.

- ``gunicorn -w 4 signin.wsgi:app``, ``waitress-serve signin.wsgi:app``,
  uWSGI's ``--module signin.wsgi:app``, mod_wsgi's ``application``;
- ``waitress-serve --call signin.wsgi:create_app``, for servers that call a factory.

``app`` is built on first use, so the factory's door builds only its own. Every
door prepares the app the same way (``signin.serving``); a start that cannot
work prints one line and exits.
"""

from __future__ import annotations

from typing import Any

from signin.serving import app_for_server, exit_with_one_line

create_app = exit_with_one_line(app_for_server)
_built: dict[str, Any] = {}


def __getattr__(name: str) -> Any:
    if name not in ("app", "application"):
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    if "app" not in _built:
        _built["app"] = create_app()
    return _built["app"]
