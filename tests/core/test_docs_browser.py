"""Swagger UI at /docs works without internet access: every asset is served by the app.

The browser tests run Debian's headless Chromium against a real `payflow serve` with every host name
unresolvable (only 127.0.0.1 is reachable), so a page that needed a CDN would render nothing.
Without Chromium they are skipped, unless PAYFLOW_REQUIRE_BROWSER=1 makes that a failure.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.live_server import clean_env, run_server

ORIGIN = "http://payflow.test"
LEAD_SCREENSHOT = Path("/tmp/payflow-docs.png")  # noqa: S108 - a fixed path for a human to open
CHROMIUM_TIMEOUT = 90.0
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MIN_SCREENSHOT_BYTES = 10_000


# --- browser ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        if os.environ.get("PAYFLOW_REQUIRE_BROWSER") == "1":
            pytest.fail("chromium is not installed, and PAYFLOW_REQUIRE_BROWSER=1 requires it")
        pytest.skip("chromium is not installed (set PAYFLOW_REQUIRE_BROWSER=1 to fail instead)")
    return path


@pytest.fixture(scope="module")
def docs_url(chromium: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """/docs of a `payflow serve` on the embedded default (started only when Chromium exists)."""
    workdir = tmp_path_factory.mktemp("docs-server")
    with run_server(clean_env(ENVIRONMENT="development"), workdir) as base_url:
        yield f"{base_url}/docs"


def _run_chromium(
    chromium: str, url: str, user_data_dir: Path, *mode: str
) -> subprocess.CompletedProcess[str]:
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={user_data_dir}",
        # No internet: every host fails to resolve but the server's own address.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=10000",
        "--window-size=1280,1000",
        *mode,
        url,
    ]
    result = subprocess.run(
        command, capture_output=True, text=True, timeout=CHROMIUM_TIMEOUT, check=False
    )
    assert result.returncode == 0, result.stderr[-4000:]
    return result


@pytest.mark.browser
def test_swagger_ui_renders_the_spec_offline(chromium: str, docs_url: str, tmp_path: Path) -> None:
    result = _run_chromium(chromium, docs_url, tmp_path / "profile", "--dump-dom")
    dom = result.stdout
    assert dom, f"Chromium rendered nothing (a failed page load exits 0): {result.stderr[-2000:]}"

    # The info block, rendered from the spec: title and version.
    assert re.search(r'<h1 class="title">payflow<', dom), dom[:2000]
    assert '<pre class="version"> 0.1.0 </pre>' in dom
    # One block per operation, tagged by path.
    for path in ("/api/v1/auth/register", "/api/v1/auth/login", "/api/v1/users/me"):
        assert f'data-path="{path}"' in dom, path
    for tag in ("auth", "users"):
        assert f'id="operations-tag-{tag}"' in dom
    assert "Failed to load API definition" not in dom
    assert 'class="errors-wrapper"' not in dom


@pytest.mark.browser
def test_swagger_ui_screenshot(chromium: str, docs_url: str, tmp_path: Path) -> None:
    screenshot = tmp_path / "docs.png"
    result = _run_chromium(chromium, docs_url, tmp_path / "profile", f"--screenshot={screenshot}")

    assert screenshot.is_file(), result.stderr[-2000:]
    data = screenshot.read_bytes()
    assert data.startswith(PNG_MAGIC)
    assert len(data) > MIN_SCREENSHOT_BYTES  # a blank page compresses to a few kB
    shutil.copyfile(screenshot, LEAD_SCREENSHOT)


# --- plain HTTP ------------------------------------------------------------------------------

_ASSET_REF = re.compile(r'\b(?:src|href)="([^"]*)"')


async def test_docs_page_references_only_local_assets(client: httpx.AsyncClient) -> None:
    page = await client.get(f"{ORIGIN}/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "http" not in page.text.lower()  # no CDN, no absolute URL of any kind

    references = _ASSET_REF.findall(page.text)
    assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(references)
    for reference in references:
        assert reference.startswith("/"), reference
        assert not reference.startswith("//"), reference
        asset = await client.get(f"{ORIGIN}{reference}")
        assert asset.status_code == 200, reference
        assert len(asset.content) > 0, reference

    init = await client.get(f"{ORIGIN}/docs/init.js")
    assert "http" not in init.text.lower()
    assert "/api/v1/openapi.json" in init.text


@pytest.mark.parametrize(
    ("asset", "media_type"),
    [
        ("swagger-ui-bundle.js", "javascript"),
        ("swagger-ui.css", "text/css"),
    ],
)
async def test_swagger_assets_are_served_by_the_app(
    client: httpx.AsyncClient, asset: str, media_type: str
) -> None:
    response = await client.get(f"{ORIGIN}/docs/assets/{asset}")
    assert response.status_code == 200
    assert media_type in response.headers["content-type"]
    assert len(response.content) > 10_000


async def test_openapi_document_describes_problems(client: httpx.AsyncClient) -> None:
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "payflow"
    assert {"/api/v1/auth/register", "/api/v1/users/me"} <= set(spec["paths"])
    problem = spec["components"]["schemas"]["Problem"]
    assert {"type", "title", "status", "detail", "code", "instance", "requestId"} <= set(
        problem["properties"]
    )
