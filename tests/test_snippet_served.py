"""`GET /s.js`: minified, compressed as browsers ask, within its size budget, cacheable, pinnable;
and the demo page that uses it."""

from __future__ import annotations

import gzip
import hashlib
import io
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
from pathlib import Path
from urllib.robotparser import RobotFileParser

import brotli
import pytest
from starlette.testclient import TestClient

BUDGET = 2048  # bytes, minified and gzipped (SPEC: quality bars)
SOURCE = Path(__file__).resolve().parent.parent / "snippet" / "swapline.js"
BUILT = SOURCE.parent / "dist" / "swapline.min.js"
PLAIN = {"accept-encoding": "identity"}  # the test client asks for gzip and brotli by itself
# scripts/build-snippet itself: its minifier (pinned in snippet/package-lock.json), its options.
_LOADER = SourceFileLoader("build_snippet", str(SOURCE.parent.parent / "scripts" / "build-snippet"))
BUILD = module_from_spec(spec_from_loader("build_snippet", _LOADER))  # type: ignore[arg-type]
_LOADER.exec_module(BUILD)


def test_the_served_snippet_fits_the_size_budget(client: TestClient) -> None:
    body = client.get("/s.js", headers=PLAIN).content
    assert len(body) < len(SOURCE.read_bytes()) * 0.8  # minified: no comments, no indentation
    assert len(gzipped(body)) <= BUDGET


def gzipped(body: bytes) -> bytes:
    """`body` as `gzip -9c swapline.min.js` compresses it: the file's name in the header counts too."""
    out = io.BytesIO()
    with gzip.GzipFile(BUILT.name, "wb", 9, out, mtime=0) as file:
        file.write(body)
    return out.getvalue()


def test_the_snippet_is_cacheable_and_revalidates(client: TestClient) -> None:
    first = client.get("/s.js", headers=PLAIN)
    assert first.headers["content-type"].startswith("text/javascript")
    assert "max-age" in first.headers["cache-control"] and first.headers["etag"]
    again = client.get("/s.js", headers={**PLAIN, "if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    changed = client.get("/s.js", headers={**PLAIN, "if-none-match": '"something-else"'})
    assert changed.status_code == 200 and changed.content == first.content


def test_the_served_snippet_is_built_from_the_source(client: TestClient) -> None:
    built = BUILD.minify(SOURCE)
    assert client.get("/s.js").content == built, "snippet/dist is stale: run scripts/build-snippet"
    assert gzip.decompress(BUILT.with_name("swapline.min.js.gz").read_bytes()) == built, "run scripts/build-snippet"
    assert brotli.decompress(BUILT.with_name("swapline.min.js.br").read_bytes()) == built, "run scripts/build-snippet"


@pytest.mark.parametrize(("asked", "encoding"), [
    ("gzip, deflate, br, zstd", "br"),  # what Chromium sends
    ("gzip, deflate", "gzip"),
    ("br;q=0, gzip", "gzip"),
    ("", None),
    ("identity", None),
    ("gzip;q=0, br;q=0", None),
    ("*", "br"),
])
def test_the_snippet_comes_compressed_as_the_browser_asks(client: TestClient, asked: str, encoding: str | None) -> None:
    plain = client.get("/s.js", headers=PLAIN)
    response = client.get("/s.js", headers={"accept-encoding": asked})
    assert response.headers.get("content-encoding") == encoding
    assert response.content == plain.content  # decoded by the client: the same snippet
    if encoding:
        assert response.num_bytes_downloaded < 0.6 * len(plain.content)
    assert response.headers["vary"] == "Accept-Encoding"
    assert (response.headers["etag"] == plain.headers["etag"]) == (encoding is None)  # caches keep them apart
    again = client.get("/s.js", headers={"accept-encoding": asked, "if-none-match": response.headers["etag"]})
    assert again.status_code == 304
    other = client.get("/s.js", headers={"accept-encoding": "identity", "if-none-match": response.headers["etag"]})
    assert other.status_code == (304 if encoding is None else 200)  # another encoding's ETag does not match


def test_a_pinned_snippet_never_changes_and_an_old_pin_gets_the_current_one(client: TestClient) -> None:
    plain = client.get("/s.js", headers=PLAIN)
    version = plain.headers["etag"].strip('"')
    assert version == hashlib.sha256(plain.content).hexdigest()[:20]  # the identity ETag names the version
    pinned = client.get(f"/s/{version}.js")
    assert pinned.status_code == 200 and pinned.content == plain.content
    assert "immutable" in pinned.headers["cache-control"] and "max-age=31536000" in pinned.headers["cache-control"]
    old = client.get("/s/0123456789abcdef0123.js", follow_redirects=False)
    assert old.status_code == 302 and old.headers["location"] == f"/s/{version}.js"
    assert "immutable" not in old.headers["cache-control"]  # the next release may point elsewhere


def test_preview_needs_experiment_and_variant(client: TestClient) -> None:
    response = client.get("/v1/decide", params={"site": "demo", "url": "/", "preview": "cta-wording"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_preview"


def test_the_demo_page_embeds_the_snippet(client: TestClient) -> None:
    page = client.get("/demo/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script async src="/s.js" data-site="demo"' in page.text


def test_crawlers_may_fetch_the_snippet_and_nothing_else(client: TestClient) -> None:
    """Google renders a site's pages with their scripts: /s.js stays open to it, while the
    service's own pages (the demo, dashboards, the API) are kept out of search indexes."""
    robots = RobotFileParser()
    robots.parse(client.get("/robots.txt").text.splitlines())
    for path in ("/s.js", "/s/3f9a0c1d2b4e.js"):  # a pinned version's address
        assert robots.can_fetch("Googlebot", path), path
    for path in ("/demo/", "/dashboard/demo", "/v1/decide?site=demo&url=/", "/v1/reports/demo", "/"):
        assert not robots.can_fetch("YandexBot", path), path
