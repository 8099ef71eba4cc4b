"""GET /api/v2/docs: the API page, every file of it served here, under a policy that allows nothing else."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import FAST_METHOD, close_client, direct_client
from tests.servers import HOST, free_port
from tests.test_processes import SIGNIN_COMMAND, call, start_serving, stop

PAGE = "/api/v2/docs"
OPENAPI = "/api/v2/openapi.json"
SCREENSHOT = Path(__file__).resolve().parents[1] / "docs" / "api.png"
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH: Debian's package renders the page (.ci/run installs it)"
)
LINKED = re.compile(r'(?:src|href|data-openapi)="([^"]*)"')


def linked(html: str) -> list[str]:
    """Every URL the page names: scripts, styles, icon, and the document it renders."""
    return LINKED.findall(html)


def policy(response) -> dict[str, set[str]]:
    """The Content-Security-Policy header, as directive -> sources."""
    directives = (part.split() for part in response.headers["Content-Security-Policy"].split(";"))
    return {name: set(sources) for name, *sources in directives}


@pytest.mark.parametrize("path", [PAGE, f"{PAGE}/"])
def test_the_page_is_html_under_a_policy_that_allows_only_this_origin(client, path):
    response = client.get(path)

    assert response.status_code == 200
    assert response.mimetype == "text/html"
    assert "Location" not in response.headers
    directives = policy(response)
    assert directives["default-src"] == {"'none'"}
    assert directives["script-src"] == {"'self'"}
    assert directives["frame-ancestors"] == {"'none'"}
    # Swagger UI's stylesheet draws its icons from data: URLs, which reach no host.
    assert {
        name: sources - {"'self'", "'none'"} for name, sources in directives.items() if sources - {"'self'", "'none'"}
    } == {"img-src": {"data:"}}


def test_the_page_runs_no_inline_script_or_style(client):
    html = client.get(PAGE).get_data(as_text=True)

    assert re.findall(r"<script(?![^>]*\bsrc=)[^>]*>", html) == []
    assert re.findall(r"<style|\son\w+=|\sstyle=|javascript:", html) == []


def test_every_file_the_page_names_is_served_by_this_service(client):
    html = client.get(PAGE).get_data(as_text=True)
    types = {".js": "text/javascript", ".css": "text/css", ".png": "image/png", ".json": "application/json"}

    urls = set(linked(html))

    assert len(urls) == 6
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        response = client.get(url)
        assert response.status_code == 200, url
        assert response.mimetype == types[Path(url).suffix], url
        assert len(response.get_data()) > 100, url


def test_the_page_names_its_files_under_the_prefix_it_is_served_at(client):
    html = client.get(PAGE, base_url="https://example.org/auth").get_data(as_text=True)

    assert all(url.startswith("/auth/api/v2/") for url in linked(html))


def test_swagger_ui_is_told_never_to_call_the_public_validator(client):
    initializer = next(url for url in linked(client.get(PAGE).get_data(as_text=True)) if "signin" in url)

    assert "validatorUrl: null" in client.get(initializer).get_data(as_text=True)


@pytest.mark.parametrize(
    "path", [f"{PAGE}/nope.js", f"{PAGE}/index.html", f"{PAGE}/oauth2-redirect.html", f"{PAGE}/..%2fopenapi.json"]
)
def test_a_file_the_page_does_not_use_is_a_json_404(client, path):
    response = client.get(path)

    assert response.status_code == 404
    assert response.get_json()["error"] == "not_found"


def test_a_wrong_method_on_the_page_is_the_json_405(client):
    response = client.post(PAGE)

    assert response.status_code == 405
    assert response.get_json()["error"] == "method_not_allowed"


def test_the_pages_files_are_never_cached_either(client):
    response = client.get(f"{PAGE}/swagger-ui-bundle.js")

    assert response.headers.getlist("Cache-Control") == ["no-store"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"


@dataclass
class Browsed:
    """What headless Chromium saw of a page: its DOM once rendered, its console, and its requests."""

    dom: str
    console: list[str]
    # (URL, the site the request was made for), from Chromium's net log.
    requests: list[tuple[str, str]]


def browse(url: str, work: Path, screenshot: Path) -> Browsed:
    """Load url in headless Chromium, let its scripts run, and save a screenshot."""
    net_log = work / "net-log.json"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={work / 'profile'}",
        # Nothing this browser asks for leaves the machine, whoever asks: its
        # own update and account checks fail here, unresolved.
        f"--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE {HOST}",
        f"--log-net-log={net_log}",
        "--enable-logging=stderr",
        "--v=0",
        "--hide-scrollbars",
        "--window-size=1280,1250",
        "--virtual-time-budget=20000",
        f"--screenshot={screenshot}",
        "--dump-dom",
        url,
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True, cwd=work)
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    log = json.loads(net_log.read_text())
    started = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    requests = [
        (event["params"]["url"], event["params"]["network_isolation_key"].partition(" ")[0])
        for event in log["events"]
        if event["type"] == started and "url" in event.get("params", {})
    ]
    return Browsed(done.stdout, console, requests)


@pytest.fixture(scope="module")
def served(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """The port of a real ``signin serve`` on a fresh SQLite file and the session's Redis."""
    directory = tmp_path_factory.mktemp("docs")
    prefix = f"test:{uuid.uuid4().hex}:"
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{directory}/signin.db",
        "REDIS_URL": redis_url,
        "SIGNIN_REDIS_PREFIX": prefix,
        "SIGNIN_PASSWORD_METHOD": FAST_METHOD,
        "RATELIMIT_ENABLED": "false",
    }
    subprocess.run([SIGNIN_COMMAND, "init-db"], env=env, check=True, capture_output=True, timeout=60)
    port = free_port()
    process = start_serving(env, port, directory / "serve.log")
    try:
        yield port
    finally:
        stop(process)
        redis = direct_client(redis_url)
        for key in redis.scan_iter(match=prefix + "*"):
            redis.delete(key)
        close_client(redis)


@pytest.fixture(scope="module")
def browsed(served: int, tmp_path_factory: pytest.TempPathFactory) -> Browsed:
    SCREENSHOT.parent.mkdir(exist_ok=True)
    return browse(f"http://{HOST}:{served}{PAGE}", tmp_path_factory.mktemp("chromium"), SCREENSHOT)


@pytest.fixture(scope="module")
def document(served: int) -> dict[str, Any]:
    status, document = call(served, "GET", OPENAPI)
    assert status == 200
    return document


@needs_chromium
def test_the_rendered_page_lists_every_operation_of_the_document(browsed, document):
    rendered = set(re.findall(r'class="opblock opblock-(\w+)[^"]*".*?data-path="([^"]*)"', browsed.dom, re.DOTALL))

    assert rendered == {(method, path) for path, methods in document["paths"].items() for method in methods}


@needs_chromium
def test_the_rendered_page_fetched_only_from_this_service(browsed, served):
    origin = f"http://{HOST}:{served}"
    # The page's requests, told from the browser's own by the site they are made for.
    fetched = [url for url, made_for in browsed.requests if made_for == f"http://{HOST}"]

    assert [url for url in fetched if not url.startswith(f"{origin}/")] == []
    assert {url.removeprefix(origin) for url in fetched} >= {PAGE, OPENAPI, f"{PAGE}/swagger-ui-bundle.js"}


@needs_chromium
def test_the_rendered_page_broke_no_policy_and_logged_nothing(browsed):
    assert browsed.console == []


@needs_chromium
def test_the_screenshot_is_saved_for_the_api_page(browsed):
    assert SCREENSHOT.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
