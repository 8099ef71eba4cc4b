"""GET /api/v2/docs: the OpenAPI document as a page a person reads, every file of it served from here.

Swagger UI's files come from the installed ``flask-swagger-ui`` package (the
official swagger-ui-dist files, its version Swagger UI's own), never from a
CDN, so the page works on a network that reaches nothing else. Its
Content-Security-Policy lets it load, run and call only this origin; the
initializer is a file of its own, as that policy allows no inline script.

Like every answer (``signin.web.headers``), these are ``no-store``: the page is
read now and then, on a near network, and one rule for every answer is worth
a couple of megabytes a visit.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Blueprint, Response, abort, url_for
from markupsafe import escape

bp = Blueprint("docs", __name__)

SWAGGER_UI = files("flask_swagger_ui") / "dist"
JS, CSS = "text/javascript; charset=utf-8", "text/css; charset=utf-8"
# What the page may fetch, by name: Swagger UI's own files and the initializer.
ASSETS = {
    "swagger-ui-bundle.js": JS,
    "swagger-ui.css": CSS,
    "index.css": CSS,
    "favicon-32x32.png": "image/png",
    "signin-docs.js": JS,
}
# Only this origin, for everything the page loads, runs, calls or submits;
# Swagger UI's stylesheet draws its icons from data: URLs, which fetch nothing.
POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
INITIALIZER = """\
// Render the OpenAPI document that #swagger-ui names, with this origin's files only.
window.addEventListener("load", function () {
  var root = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: root.dataset.openapi,
    domNode: root,
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
    deepLinking: true,
    displayRequestDuration: true,
    // Never send the document to validator.swagger.io.
    validatorUrl: null
  });
});
"""
PAGE = """\
<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>signin API</title>
<link rel="stylesheet" href="{swagger_css}">
<link rel="stylesheet" href="{index_css}">
<link rel="icon" type="image/png" href="{icon}">
</head>
<body>
<div id="swagger-ui" data-openapi="{openapi}"></div>
<noscript><p>This page needs JavaScript; the document it shows is <a href="{openapi}">{openapi}</a>.</p></noscript>
<script src="{bundle}"></script>
<script src="{initializer}"></script>
</body>
</html>
"""


@bp.get("/api/v2/docs")
def page() -> Response:
    """Show the OpenAPI document as a page to read and try in a browser."""

    def asset(name: str) -> str:
        return escape(url_for("docs.asset", name=name))

    html = PAGE.format(
        swagger_css=asset("swagger-ui.css"),
        index_css=asset("index.css"),
        icon=asset("favicon-32x32.png"),
        bundle=asset("swagger-ui-bundle.js"),
        initializer=asset("signin-docs.js"),
        openapi=escape(url_for("openapi.openapi")),
    )
    response = Response(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response


@bp.get("/api/v2/docs/<name>")
def asset(name: str) -> Response:
    """Serve one of the page's scripts, styles or images."""
    if name not in ASSETS:
        abort(404)
    body = INITIALIZER.encode() if name == "signin-docs.js" else (SWAGGER_UI / name).read_bytes()
    response = Response(body, content_type=ASSETS[name])
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
