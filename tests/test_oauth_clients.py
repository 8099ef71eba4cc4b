"""Standard OAuth 2.0 libraries against a real ``signin serve``, each without a compliance hook.

authlib's ``OAuth2Session`` and requests-oauthlib's ``OAuth2Session`` with a
``LegacyApplicationClient`` fetch a token with the password grant, refresh it
when it expires and call an API with it; authlib's resource protector, in
another Flask app, accepts a bearer only if signin's introspection says it is
an access token.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from authlib.integrations.flask_oauth2 import ResourceProtector
from authlib.integrations.requests_client import OAuth2Session as AuthlibSession
from authlib.oauth2.rfc7662 import IntrospectTokenValidator
from flask import Flask
from oauthlib.oauth2 import LegacyApplicationClient
from requests_oauthlib import OAuth2Session as RequestsOAuthlibSession

from tests.servers import PASSWORD, SigninServe, instance_env, run_signin

TOKEN = "/api/v2/account/token/"
ME = "/api/v2/account/me/"
REFRESH = "/api/v2/account/refresh/"


class Signin:
    """A real signin serve holding alice, and a registered service's credentials."""

    def __init__(self, server: SigninServe, service: tuple[str, str]) -> None:
        self.server, self.service = server, service

    def url(self, path: str) -> str:
        return self.server.base + path


def serve(directory: Path, **settings: str) -> Iterator[Signin]:
    env = instance_env(directory, **settings)
    secret = run_signin(env, "services", "add", "reports").stdout.strip().splitlines()[-1]
    with SigninServe(env) as server:
        yield Signin(server, ("reports", secret))


@pytest.fixture
def signin(tmp_path) -> Iterator[Signin]:
    # An access token shorter-lived than authlib's 60 s of leeway: it is refreshed before each request.
    yield from serve(tmp_path, SIGNIN_ACCESS_TOKEN_TTL="30")


@pytest.fixture
def long_lived(tmp_path) -> Iterator[Signin]:
    yield from serve(tmp_path)  # access tokens as shipped: a week


def test_authlib_fetches_a_token_with_the_password_grant_and_uses_it(long_lived):
    signin = long_lived
    with AuthlibSession(client_id="signin", scope="read") as session:
        token = session.fetch_token(signin.url(TOKEN), username="alice", password=PASSWORD)

        me = session.get(signin.url(ME))

    assert (token["token_type"], token["expires_in"], token["scope"]) == ("Bearer", 604800, "read")
    assert (me.status_code, me.json()["username"], me.json()["scope"]) == (200, "alice", "read")


def test_authlib_refreshes_an_expired_token_by_itself_and_keeps_the_new_refresh_token(signin):
    updated = []
    with AuthlibSession(
        client_id="signin", token_endpoint=signin.url(TOKEN), update_token=lambda token, **_: updated.append(token)
    ) as session:
        first = session.fetch_token(signin.url(TOKEN), username="alice", password=PASSWORD)

        answers = [session.get(signin.url(ME)).status_code for _ in range(3)]

    # Each request found the token within authlib's leeway of its expiry and refreshed it first: three
    # rotations, each with the refresh token the one before handed out (a spent one would end the session).
    assert answers == [200, 200, 200]
    assert len(updated) == 3
    refresh_tokens = [first["refresh_token"], *(token["refresh_token"] for token in updated)]
    assert len(set(refresh_tokens)) == 4
    spent = requests.post(signin.url(REFRESH), data={"refresh_token": first["refresh_token"]}, timeout=10)
    assert spent.status_code == 401


@pytest.fixture
def plain_http(monkeypatch) -> None:
    # oauthlib refuses http:// unless told this is a test; signin in production sits behind TLS.
    monkeypatch.setenv("OAUTHLIB_INSECURE_TRANSPORT", "1")


def test_requests_oauthlib_fetches_refreshes_and_uses_a_token(signin, plain_http):
    updated = []
    client = LegacyApplicationClient(client_id="signin")
    with RequestsOAuthlibSession(
        client=client, auto_refresh_url=signin.url(TOKEN), token_updater=updated.append
    ) as session:
        first = session.fetch_token(token_url=signin.url(TOKEN), username="alice", password=PASSWORD)
        fresh = session.get(signin.url(ME))
        # The client's clock moves past the token's expiry: it refreshes before the next request.
        session.token = {**session.token, "expires_at": time.time() - 1}
        after_expiry = session.get(signin.url(ME))

    assert (first["token_type"], first["expires_in"], first["scope"]) == ("Bearer", 30, ["read", "write"])
    assert (fresh.status_code, after_expiry.status_code) == (200, 200)
    assert [token["refresh_token"] != first["refresh_token"] for token in updated] == [True]
    assert after_expiry.request.headers["Authorization"] == f"Bearer {updated[0]['access_token']}"


def test_requests_oauthlib_sees_a_wrong_password_as_invalid_grant(signin, plain_http):
    from oauthlib.oauth2.rfc6749.errors import InvalidGrantError

    session = RequestsOAuthlibSession(client=LegacyApplicationClient(client_id="signin"))
    with pytest.raises(InvalidGrantError):
        session.fetch_token(token_url=signin.url(TOKEN), username="alice", password="wrong")
    session.close()


def resource_server(signin: Signin) -> Flask:
    """Another service's Flask app, protecting a route with authlib and signin's introspection."""

    class SigninIntrospection(IntrospectTokenValidator):
        def introspect_token(self, token_string: str) -> dict:
            answer = requests.post(
                signin.url("/api/v2/account/introspect/"), data={"token": token_string}, auth=signin.service, timeout=10
            )
            answer.raise_for_status()
            return answer.json()

    protect = ResourceProtector()
    protect.register_token_validator(SigninIntrospection())
    app = Flask("reports")

    @app.get("/reports")
    @protect()
    def reports() -> dict:
        return {"reports": []}

    return app


def test_authlibs_resource_protector_refuses_a_refresh_token_as_a_bearer(signin):
    token = requests.post(
        signin.url(TOKEN), data={"grant_type": "password", "username": "alice", "password": PASSWORD}, timeout=10
    ).json()
    client = resource_server(signin).test_client()

    with_access = client.get("/reports", headers={"Authorization": f"Bearer {token['access_token']}"})
    with_refresh = client.get("/reports", headers={"Authorization": f"Bearer {token['refresh_token']}"})

    assert (with_access.status_code, with_access.get_json()) == (200, {"reports": []})
    assert with_refresh.status_code == 401
    assert with_refresh.get_json()["error"] == "invalid_token"
