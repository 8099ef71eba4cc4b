"""Every route answers with and without its trailing slash, directly; a wrong method is a 405 either way."""

from __future__ import annotations

import pytest

ROUTES = {
    "/api/v2/account/signin/": {"POST"},
    "/api/v2/account/refresh/": {"POST"},
    "/api/v2/account/signout/": {"POST"},
    "/api/v2/account/me/": {"GET", "HEAD"},
    "/api/v2/account/password/": {"POST"},
    "/api/v2/account/sessions/": {"GET", "HEAD", "DELETE"},
    "/api/v2/account/sessions/<session_id>/": {"DELETE"},
    "/api/v2/account/totp/": {"POST"},
    "/api/v2/account/totp/confirm/": {"POST"},
    "/api/v2/account/totp/disable/": {"POST"},
    "/api/v2/account/introspect/": {"POST"},
    "/api/v2/account/token/": {"POST"},
    "/api/v2/account/revoke/": {"POST"},
    "/healthz": {"GET", "HEAD"},
    "/readyz": {"GET", "HEAD"},
    "/api/v2/openapi.json": {"GET", "HEAD"},
    "/api/v2/docs": {"GET", "HEAD"},
}


def test_the_table_names_every_route(app):
    routed = {rule.rule for rule in app.url_map.iter_rules() if rule.endpoint != "static"}

    assert routed - {"/metrics", "/api/v2/docs/<name>"} == set(ROUTES)


@pytest.mark.parametrize("slash", ["as routed", "toggled"])
@pytest.mark.parametrize(("route", "allowed"), ROUTES.items())
def test_a_method_the_route_does_not_take_is_405_with_allow(client, route, allowed, slash):
    path = route if slash == "as routed" else (route[:-1] if route.endswith("/") else f"{route}/")
    method = "PUT" if "POST" not in allowed else "GET"

    response = client.open(path, method=method)

    assert response.status_code == 405
    assert set(response.headers["Allow"].split(", ")) == allowed
    assert response.get_json() == {
        "error": "method_not_allowed",
        "error_description": "This endpoint does not allow that method.",
    }


@pytest.mark.parametrize("path", ["/api/v2/account/nowhere", "/api/v2/account/nowhere/", "/api/v2/account"])
def test_a_path_no_route_takes_is_404_whatever_the_method(client, path):
    for method in ("GET", "POST", "DELETE"):
        response = client.open(path, method=method)

        assert (response.status_code, response.get_json()["error"]) == (404, "not_found")


@pytest.mark.parametrize(
    "path", ["/api/v2//account/signin/", "/api/v2/account//me", "//healthz", "/healthz//", "/api/v2/account/signin///"]
)
def test_a_path_with_slashes_no_route_has_is_404_not_a_redirect(client, path):
    response = client.open(path, method="POST" if "signin" in path else "GET")

    assert (response.status_code, response.get_json()["error"]) == (404, "not_found")
    assert "Location" not in response.headers
