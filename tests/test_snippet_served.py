"""`GET /s.js`: minified, within its size budget, cacheable; and the demo page that uses it."""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

from starlette.testclient import TestClient

BUDGET = 2048  # bytes, minified and gzipped (SPEC: quality bars)
SOURCE = Path(__file__).resolve().parent.parent / "snippet" / "swapline.js"


def test_the_served_snippet_fits_the_size_budget(client: TestClient) -> None:
    body = client.get("/s.js").content
    assert len(body) < len(SOURCE.read_bytes()) * 0.8  # minified: no comments, no indentation
    assert len(gzip.compress(body, 9)) <= BUDGET


def test_the_snippet_is_cacheable_and_revalidates(client: TestClient) -> None:
    first = client.get("/s.js")
    assert first.headers["content-type"].startswith("text/javascript")
    assert "max-age" in first.headers["cache-control"] and first.headers["etag"]
    again = client.get("/s.js", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    changed = client.get("/s.js", headers={"if-none-match": '"something-else"'})
    assert changed.status_code == 200 and changed.content == first.content


def test_the_served_snippet_is_built_from_the_source(client: TestClient) -> None:
    built = subprocess.run(["esbuild", str(SOURCE), "--minify", "--target=es2017", "--log-level=warning"],
                           check=True, capture_output=True, timeout=60).stdout  # as scripts/build-snippet does
    assert client.get("/s.js").content == built, "snippet/dist is stale: run scripts/build-snippet"


def test_preview_needs_experiment_and_variant(client: TestClient) -> None:
    response = client.get("/v1/decide", params={"site": "demo", "url": "/", "preview": "cta-wording"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_preview"


def test_the_demo_page_embeds_the_snippet(client: TestClient) -> None:
    page = client.get("/demo/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script async src="/s.js" data-site="demo"' in page.text
