"""GET /api/v2/openapi.json: a valid document of every route, true to what the routes answer."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate

from signin import create_app
from signin.rules.services import add_service
from signin.web import openapi
from signin.web.account.schemas import grant
from signin.web.errors import InvalidScope
from tests.conftest import PASSWORD, SIGNIN
from tests.servers import RedisServer

OPENAPI = "/api/v2/openapi.json"
REFRESH = "/api/v2/account/refresh/"
TOKEN = "/api/v2/account/token/"
SIGNOUT = "/api/v2/account/signout/"
ME = "/api/v2/account/me/"
INTROSPECT = "/api/v2/account/introspect/"
REVOKE = "/api/v2/account/revoke/"
FORM = "application/x-www-form-urlencoded"


def served(app) -> set[tuple[str, str]]:
    """Every (path, method) the app routes and the document describes, as werkzeug names them."""
    return {
        (rule.rule, method.lower())
        for rule in app.url_map.iter_rules()
        if rule.endpoint not in openapi.UNDESCRIBED
        for method in rule.methods - {"HEAD", "OPTIONS"}
    }


def resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref``s to the object they name."""
    while "$ref" in node:
        target = doc
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def validator(doc: dict[str, Any], schema: dict[str, Any]) -> OAS31Validator:
    """A validator for one schema of the document, its references resolved in the document."""
    return OAS31Validator({**schema, "components": doc["components"]}, format_checker=OAS31Validator.FORMAT_CHECKER)


def assert_valid(doc: dict[str, Any], described: dict[str, Any], response) -> None:
    """Assert that a real response has the headers and the body that a described response promises."""
    for header in described.get("headers", {}):
        assert header in response.headers
    if "content" not in described:
        assert response.get_data() == b""
        return
    validator(doc, described["content"]["application/json"]["schema"]).validate(response.get_json())


def assert_described(doc: dict[str, Any], method: str, path: str, response) -> None:
    """Assert that the document names this real response's status for the operation, and fits it."""
    responses = doc["paths"][path][method]["responses"]
    assert str(response.status_code) in responses
    assert_valid(doc, responses[str(response.status_code)], response)


@pytest.fixture
def doc(client) -> dict[str, Any]:
    response = client.get(OPENAPI)
    assert response.status_code == 200
    return response.get_json()


@pytest.fixture
def service(app) -> str:
    """The Authorization header of a registered service."""
    with app.app_context():
        secret = add_service("billing")
    return "Basic " + base64.b64encode(f"billing:{secret}".encode()).decode()


def test_the_document_is_valid_openapi(doc):
    validate(doc)
    assert doc["openapi"].startswith("3.")


@pytest.mark.parametrize("path", [OPENAPI, OPENAPI + "/"])
def test_the_document_answers_with_and_without_trailing_slash(client, path):
    response = client.get(path)

    assert response.status_code == 200
    assert "Location" not in response.headers
    assert response.get_json()["paths"]


def test_every_route_and_method_is_described(app, doc):
    for path, method in served(app):
        described = openapi.ROUTE_VARIABLE.sub(r"{\1}", path)
        assert method in doc["paths"].get(described, {}), f"{method.upper()} {described}"


def test_every_row_of_the_table_is_a_route(app):
    assert set(openapi.OPERATIONS) == served(app)


def test_only_the_api_pages_files_are_left_out_of_the_document(app, doc):
    left_out = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if openapi.ROUTE_VARIABLE.sub(r"{\1}", rule.rule) not in doc["paths"]
    }

    # Flask's own static route, unused, and the API page's files.
    assert left_out == {"static", "docs.asset"} == openapi.UNDESCRIBED


def test_a_route_without_a_row_is_an_error(app):
    app.add_url_rule("/unlisted", "unlisted", lambda: "")

    with pytest.raises(LookupError, match="GET /unlisted"):
        openapi.build(app)


def test_the_document_is_built_once(client, monkeypatch):
    builds = []
    build = openapi.build

    def counted(app):
        builds.append(app)
        return build(app)

    monkeypatch.setattr(openapi, "build", counted)

    first, second = client.get(OPENAPI), client.get(OPENAPI + "/")

    assert first.get_json() == second.get_json()
    assert len(builds) == 1


@pytest.mark.parametrize("media_type", ["application/json", FORM])
def test_signin_reads_username_and_password_in_both_media_types(doc, media_type):
    body = doc["paths"][SIGNIN]["post"]["requestBody"]
    schema = resolve(doc, body["content"][media_type]["schema"])

    assert body["required"] is True
    assert {"username", "password"} <= set(schema["required"])
    assert schema["properties"]["username"]["maxLength"] == 150
    assert schema["properties"]["password"]["maxLength"] == 1024
    assert schema["properties"]["password"]["writeOnly"] is True


def test_signin_answers_the_seed_token_with_expires_in_a_string(doc):
    ok = doc["paths"][SIGNIN]["post"]["responses"]["200"]
    answer = resolve(doc, ok["content"]["application/json"]["schema"])
    token = resolve(doc, answer["properties"]["token"])

    assert ok["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/TokenResponse"}
    assert token["properties"]["expires_in"]["type"] == "string"
    assert set(token["required"]) == {"access_token", "expires_in", "token_type", "refresh_token", "client_id", "scope"}
    assert set(ok["headers"]) == {"Cache-Control", "Pragma"}


def test_signin_names_the_configured_clients_and_nothing_else(settings):
    settings["SIGNIN_CLIENTS"] = ["web", "cli"]

    doc = openapi.build(create_app(settings))

    client_id = doc["components"]["schemas"]["Signin"]["properties"]["client_id"]
    assert (client_id["type"], client_id["enum"], client_id["default"]) == ("string", ["web", "cli"], "web")


def test_signin_names_the_configured_scopes_and_default(settings):
    settings.update(SIGNIN_SCOPES=["profile", "billing.read"], SIGNIN_DEFAULT_SCOPE="profile")

    doc = openapi.build(create_app(settings))

    scope = doc["components"]["schemas"]["Signin"]["properties"]["scope"]
    assert (scope["type"], scope["default"]) == ("string", "profile")
    assert re.fullmatch(scope["pattern"], "billing.read profile")
    assert not re.fullmatch(scope["pattern"], "billing-read")
    assert "`profile`, `billing.read`" in scope["description"]


SCOPES = ["read", "write", "read write", "write read read", " read", "read  write ", "", " ", "admin", "read admin"]
SCOPES += ["read\twrite", "read\u00a0write", "read\nwrite", "Read", "readwrite", "read,write", "(read)"]


def accepted_scope(scope: str) -> bool:
    try:
        grant(None, scope)
    except InvalidScope:
        return False
    return True


@pytest.mark.parametrize("scope", SCOPES)
def test_the_scope_pattern_matches_what_signin_grants(app, doc, scope):
    pattern = doc["components"]["schemas"]["Signin"]["properties"]["scope"]["pattern"]

    with app.app_context():
        assert bool(re.fullmatch(pattern, scope)) == accepted_scope(scope)


# hypothesis warns when the global random state moves while it draws; another test's thread still
# running (redis-py's jittered backoff, a request id) can move it, not this strategy.
@pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")
def test_the_scope_pattern_matches_what_signin_grants_for_any_scope(app, doc):
    pattern = doc["components"]["schemas"]["Signin"]["properties"]["scope"]["pattern"]
    words = st.sampled_from(["read", "write", "admin", "", " ", "  ", "\t", "\u00a0", "."])

    # Inside the test, so hypothesis does not run the fixtures once per example.
    @given(st.lists(words, max_size=6).map("".join))
    def agrees(scope: str) -> None:
        with app.app_context():
            assert bool(re.fullmatch(pattern, scope)) == accepted_scope(scope)

    agrees()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"client_id": None}, "client_id"),
        ({"client_id": "null"}, "client_id"),
        ({"scope": None}, "scope"),
    ],
)
def test_what_the_document_does_not_allow_is_refused(client, alice, extra, field):
    response = client.post(SIGNIN, json={**CREDENTIALS, **extra})

    assert response.status_code == 400
    assert set(response.get_json()["fields"]) == {field}


@pytest.mark.parametrize("media", ["json", "data"])
def test_the_sign_in_example_signs_its_user_in(client, accounts, doc, media):
    example = doc["paths"][SIGNIN]["post"]["requestBody"]["content"]["application/json"]["example"]
    accounts.create(example["username"], example["password"])

    response = client.post(SIGNIN, **{media: example})

    assert response.status_code == 200, response.get_json()


def test_the_error_schema_names_fields_as_clients_see_it(doc):
    error = doc["components"]["schemas"]["Error"]

    assert set(error["properties"]) == {"error", "error_description", "fields", "reasons"}
    assert error["required"] == ["error", "error_description"]


def test_marshmallow_validators_become_json_schema_keywords(doc):
    hint = doc["components"]["schemas"]["TokenRequest"]["properties"]["token_type_hint"]

    assert hint["maxLength"] == 64
    assert doc["components"]["schemas"]["Refresh"]["properties"]["refresh_token"]["minLength"] == 1


def test_the_security_schemes(doc):
    schemes = doc["components"]["securitySchemes"]

    assert (schemes["bearerAuth"]["type"], schemes["bearerAuth"]["scheme"]) == ("http", "bearer")
    assert (schemes["serviceBasic"]["type"], schemes["serviceBasic"]["scheme"]) == ("http", "basic")


@pytest.mark.parametrize(
    ("method", "path", "scheme"),
    [
        ("post", SIGNIN, None),
        ("post", REFRESH, None),
        ("post", TOKEN, None),
        ("post", SIGNOUT, "bearerAuth"),
        ("get", ME, "bearerAuth"),
        ("post", INTROSPECT, "serviceBasic"),
        ("post", REVOKE, "serviceBasic"),
        ("get", "/healthz", None),
        ("get", "/readyz", None),
        ("get", OPENAPI, None),
    ],
)
def test_who_may_call_each_operation(doc, method, path, scheme):
    assert doc["paths"][path][method].get("security") == ([{scheme: []}] if scheme else None)


@pytest.mark.parametrize(
    ("method", "path", "status", "errors", "headers"),
    [
        ("post", SIGNIN, "400", {"invalid_request", "invalid_scope"}, set()),
        ("post", SIGNIN, "401", {"invalid_grant", "mfa_required"}, set()),
        ("post", SIGNIN, "429", {"rate_limited"}, {"Retry-After"}),
        ("post", SIGNIN, "503", {"temporarily_unavailable"}, {"Retry-After"}),
        ("post", REFRESH, "401", {"invalid_grant"}, set()),
        (
            "post",
            TOKEN,
            "400",
            {"invalid_request", "invalid_scope", "invalid_grant", "mfa_required", "unsupported_grant_type"},
            set(),
        ),
        ("post", TOKEN, "401", {"invalid_client"}, {"WWW-Authenticate"}),
        ("post", TOKEN, "429", {"rate_limited"}, {"Retry-After"}),
        ("post", REFRESH, "429", {"rate_limited"}, {"Retry-After"}),
        ("post", SIGNOUT, "401", {"invalid_token"}, {"WWW-Authenticate"}),
        ("get", ME, "401", {"invalid_token"}, {"WWW-Authenticate"}),
        ("post", INTROSPECT, "401", {"invalid_client"}, {"WWW-Authenticate"}),
        ("post", INTROSPECT, "429", {"rate_limited"}, {"Retry-After"}),
        ("post", REVOKE, "401", {"invalid_client"}, {"WWW-Authenticate"}),
    ],
)
def test_the_errors_of_the_contract_table(doc, method, path, status, errors, headers):
    described = doc["paths"][path][method]["responses"][status]

    assert set(described["content"]["application/json"]["examples"]) == errors
    assert set(described.get("headers", {})) == headers


def test_every_body_is_json_or_form_and_can_be_refused(doc):
    for path, operations in doc["paths"].items():
        for method, operation in operations.items():
            if "requestBody" in operation:
                content = operation["requestBody"]["content"]
                assert set(content) == {"application/json", FORM}, f"{method} {path}"
                assert content["application/json"] == content[FORM]
                assert {"400", "413", "415"} <= set(operation["responses"]), f"{method} {path}"
            assert "default" in operation["responses"]


def properties(node: Any, where: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every property of every schema anywhere in the document, with where it is."""
    if isinstance(node, dict):
        if isinstance(node.get("properties"), dict):
            for name, schema in node["properties"].items():
                yield f"{where}/properties/{name}", schema
        for key, value in node.items():
            yield from properties(value, f"{where}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from properties(value, f"{where}/{index}")


def test_every_property_of_every_schema_is_described(doc):
    described = dict(properties(doc))

    assert len(described) >= 39
    assert [where for where, schema in described.items() if not schema.get("description")] == []


def test_signin_describes_username_and_password_as_the_seed_does(doc):
    signin = doc["components"]["schemas"]["Signin"]["properties"]

    assert signin["username"]["description"] == "The username of the user."
    assert signin["password"]["description"] == "The password of the user."


def operations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for path, methods in doc["paths"].items():
        for method, operation in methods.items():
            yield f"{method.upper()} {path}", operation


def test_every_request_body_has_a_valid_example(doc):
    for name, operation in operations(doc):
        for media_type, medium in operation.get("requestBody", {}).get("content", {}).items():
            assert "example" in medium, f"{name} {media_type}: no example; give its fields metadata examples"
            validator(doc, medium["schema"]).validate(medium["example"])


def test_every_operation_has_a_valid_example_of_its_success(doc):
    for name, operation in operations(doc):
        successes = {status: answer for status, answer in operation["responses"].items() if status.startswith("2")}
        assert successes, name
        for status, answer in successes.items():
            for media_type, medium in answer.get("content", {}).items():
                assert "example" in medium, f"{name} {status} {media_type}: no example; give its fields examples"
                validator(doc, medium["schema"]).validate(medium["example"])


def test_the_sign_in_example_answer_is_the_seeds_shape(doc):
    example = doc["paths"][SIGNIN]["post"]["responses"]["200"]["content"]["application/json"]["example"]

    assert list(example) == ["token"]
    assert list(example["token"]) == ["access_token", "expires_in", "token_type", "refresh_token", "client_id", "scope"]
    assert example["token"]["expires_in"] == "604800"
    assert example["token"]["token_type"] == "Bearer"


@pytest.mark.parametrize(("base_url", "server"), [("http://localhost", "/"), ("https://example.org/auth", "/auth")])
def test_the_server_is_this_service_relative_to_its_host(client, base_url, server):
    doc = client.get(OPENAPI, base_url=base_url).get_json()

    assert [entry["url"] for entry in doc["servers"]] == [server]


CREDENTIALS = {"username": "alice", "password": PASSWORD}
AS_BEARER = {"Authorization": "Bearer {access_token}"}
AS_SERVICE = {"Authorization": "{service}"}
# (method, path, status, the request's arguments); "{...}" is filled from a fresh sign-in.
CALLS = [
    ("post", SIGNIN, 200, {"json": CREDENTIALS}),
    ("post", SIGNIN, 200, {"data": CREDENTIALS}),
    ("post", SIGNIN, 400, {"json": {"username": ""}}),
    ("post", SIGNIN, 400, {"json": {**CREDENTIALS, "scope": "admin"}}),
    ("post", SIGNIN, 401, {"json": {**CREDENTIALS, "password": "wrong"}}),
    ("post", SIGNIN, 413, {"json": {"username": "x" * 20000}}),
    ("post", SIGNIN, 415, {"data": "x", "content_type": "text/plain"}),
    ("post", REFRESH, 200, {"data": {"refresh_token": "{refresh_token}"}}),
    ("post", REFRESH, 401, {"json": {"refresh_token": "x"}}),
    ("post", TOKEN, 200, {"data": {"grant_type": "password", **CREDENTIALS}}),
    ("post", TOKEN, 200, {"json": {"grant_type": "refresh_token", "refresh_token": "{refresh_token}"}}),
    ("post", TOKEN, 400, {"data": {"grant_type": "password", **CREDENTIALS, "password": "wrong"}}),
    ("post", TOKEN, 400, {"data": {"grant_type": "client_credentials"}}),
    ("post", TOKEN, 400, {"data": {"grant_type": "password"}}),
    ("post", TOKEN, 401, {"data": {"grant_type": "password", **CREDENTIALS, "client_id": "elsewhere"}}),
    ("post", SIGNOUT, 204, {"headers": AS_BEARER}),
    ("post", SIGNOUT, 400, {"headers": AS_BEARER, "json": {"everywhere": "maybe"}}),
    ("post", SIGNOUT, 401, {}),
    ("get", ME, 200, {"headers": AS_BEARER}),
    ("get", ME, 401, {"headers": {"Authorization": "Bearer x"}}),
    ("post", INTROSPECT, 200, {"headers": AS_SERVICE, "data": {"token": "{access_token}"}}),
    ("post", INTROSPECT, 200, {"headers": AS_SERVICE, "data": {"token": "x"}}),
    ("post", INTROSPECT, 400, {"headers": AS_SERVICE}),
    ("post", INTROSPECT, 401, {"data": {"token": "{access_token}"}}),
    ("post", REVOKE, 200, {"headers": AS_SERVICE, "json": {"token": "{refresh_token}"}}),
    ("get", "/healthz", 200, {}),
    ("get", "/readyz", 200, {}),
    ("get", OPENAPI, 200, {}),
]


def fill(value: Any, names: dict[str, str]) -> Any:
    """Put a signed-in user's tokens and a service's credentials into a request's arguments."""
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {key: fill(item, names) for key, item in value.items()}
    return value


@pytest.mark.parametrize(("method", "path", "status", "arguments"), CALLS, ids=[f"{c[0]} {c[1]} {c[2]}" for c in CALLS])
def test_real_responses_are_described(doc, client, accounts, alice, service, method, path, status, arguments):
    names = {**accounts.signin(), "service": service}

    response = client.open(path, method=method, **fill(arguments, names))

    assert response.status_code == status, response.get_json()
    assert_described(doc, method, path, response)


@pytest.mark.parametrize(("method", "path"), [("put", SIGNIN), ("get", "/nowhere")])
def test_unrouted_errors_have_the_default_shape(doc, client, method, path):
    response = client.open(path, method=method)

    assert response.status_code in (404, 405)
    assert_valid(doc, doc["components"]["responses"]["Error"], response)


def test_a_not_ready_answer_is_described(settings, doc):
    with RedisServer() as server:
        app = create_app({**settings, "REDIS_URL": server.url})
        server.stop()
        response = app.test_client().get("/readyz")

    assert response.status_code == 503
    assert response.get_json()["checks"] == {"database": "ok", "redis": "unavailable"}
    assert_described(doc, "get", "/readyz", response)


@pytest.fixture
def throttled(settings) -> None:
    settings.update(RATELIMIT_ENABLED=True, SIGNIN_LIMIT_SIGNIN_PER_ADDRESS="1 per minute")


def test_a_throttled_answer_is_described(throttled, client, doc, alice):
    client.post(SIGNIN, json=CREDENTIALS)
    response = client.post(SIGNIN, json=CREDENTIALS)

    assert response.status_code == 429
    assert_described(doc, "post", SIGNIN, response)
