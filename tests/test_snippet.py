"""The snippet in a real headless Chromium, on fixture pages of another origin, against the
real service: swaps, numbers, beacons, and a page left alone when the service fails."""

from __future__ import annotations

import base64
import datetime
import hashlib
import http.server
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import orjson
import pytest
import redis
from playwright.sync_api import Browser, Page, Request, Route

from service.front.snippet import MINIFIED
from service.tracking.pools import PoolKeys
from tests.browser import ARGS, CHROMIUM, chromium
from tests.conftest import BROWSER, BROWSER_HEADERS, free_port, start, stop

FIXTURES = Path(__file__).resolve().parent.parent / "snippet" / "fixtures"
# The README's optional anti-flicker lines for <head>, and the CSP hash it gives for them.
README = (FIXTURES.parent.parent / "README.md").read_text()
ANTI_FLICKER = re.search(r"^<script>(.+)</script>$", README, re.M).group(1)  # type: ignore[union-attr]
ANTI_FLICKER_HASH = re.search(r"'(sha256-[\w+/=]+)'", README).group(1)  # type: ignore[union-attr]
REPORT = {"authorization": "Bearer fixture-report-token-01"}
NUMBERS = [f"+7 812 700-00-{i:02d}" for i in range(1, 60)]  # a visitor a test, most of them: none overflows


# How long the fixture page lets the snippet wait for the service (data-timeout, ms): tests not
# about the time-out must not run out of it on a busy machine. `?timeout=default` leaves the
# attribute out, for the snippet's own default.
TIMEOUT = "60000"
PAUSED_AT = datetime.datetime(2026, 11, 18, 12, 0, 0)
# What the rule of the catalog's routes (`page: /catalog/**`) writes: its headline outranks the
# every-page one there, and its button text is set by no rule of any other page.
CATALOG_HERO, CATALOG_BUTTON = "Каталог кондиционеров", "Купить"


class Fixtures(http.server.ThreadingHTTPServer):
    """Serves the fixture pages; as `?service=self` it also plays a slow or broken service."""

    service = ""
    mode = "slow"  # for pages served with ?service=self: "slow" answers once released, "down" fails

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.release = threading.Event()  # the slow service answers when the test sets this
        self.answered = threading.Event()  # set once it has sent (or tried to send) that answer


class Handler(http.server.BaseHTTPRequestHandler):
    server: Fixtures

    def do_GET(self) -> None:
        path, _, query = self.path.partition("?")
        if path == "/s.js":
            return self.answer(200, "text/javascript", MINIFIED)
        if path == "/v1/decide":
            if self.server.mode == "down":
                return self.answer(503, "application/json", b'{"error": {"code": "down", "message": "down"}}')
            self.server.release.wait(60)  # a safety net only: the test releases the answer
            late = {"vid": "late-visitor-000000001", "token": "x", "phone": None,
                    "swaps": [{"selector": "h1.hero", "property": "textContent", "value": "Too late"}]}
            try:
                return self.answer(200, "application/json", orjson.dumps(late))
            except OSError:  # the snippet gave up and closed the connection
                return None
            finally:
                self.server.answered.set()
        service = f"http://127.0.0.1:{self.server.server_port}" if "service=self" in query else self.server.service
        timeout = parse_qs(query).get("timeout", [TIMEOUT])[0]
        # A single-page app's routes (/spa/, /spa/about…) are one page, its router's.
        fixture = FIXTURES / ("spa.html" if path.startswith("/spa/") else path.lstrip("/"))
        if not fixture.is_file():  # the images the media page's rules name, say: not there
            return self.answer(404, "text/plain", b"no such fixture")
        page = fixture.read_text().replace("{{SERVICE}}", service)
        if timeout == "default":
            page = page.replace(' data-timeout="{{TIMEOUT}}"', "")
        if "consent=required" in query:
            page = page.replace('data-site="fixture"', 'data-site="fixture" data-consent="required"')
        if "name=" in query:  # ?name=acme: the API is window.acme
            page = page.replace('data-site="fixture"', f'data-site="fixture" data-name="{parse_qs(query)["name"][0]}"')
        if "clash" in query:  # an element with the API's name comes before the snippet runs
            page = page.replace("<script async", '<p id="swapline">a page\'s own</p><script async')
        page = page.replace("{{ANTIFLICKER}}", f"<script>{ANTI_FLICKER}</script>" if "antiflicker" in query else "")
        if pinned := parse_qs(query).get("pin"):  # ?pin=VERSION&integrity=sha384-…: a page that pins the snippet
            integrity = parse_qs(query)["integrity"][0]
            page = page.replace(f'src="{service}/s.js"', f'src="{service}/s/{pinned[0]}.js" '
                                                        f'integrity="{integrity}" crossorigin="anonymous"')
        # The strict policy of issue 16: no inline style at all, no inline script but the README's.
        strict = {"content-security-policy": f"default-src 'none'; img-src data:; style-src 'self'; "
                                             f"script-src {service} '{ANTI_FLICKER_HASH}'; connect-src {service}"}
        self.answer(200, "text/html; charset=utf-8", page.replace("{{TIMEOUT}}", timeout).encode(),
                    strict if path == "/csp.html" else {})

    def answer(self, status: int, kind: str, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("access-control-allow-origin", "*")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def fixtures() -> Iterator[Fixtures]:
    server = Fixtures(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server
    server.release.set()  # no handler left waiting
    server.shutdown()


def ready_for_decisions(base: str) -> None:
    """Wait until a decision is not degraded: on a busy machine the store's first connection
    can miss its deadline, and the service then degrades its decisions for half a second. The
    request is a script's (no Sec-Fetch-Mode): it counts as a bot and leases no number."""
    deadline = time.monotonic() + 60  # a safety net only
    while httpx.get(f"{base}/v1/decide", params={"site": "fixture", "url": "/"}, timeout=60).json()["degraded"]:
        assert time.monotonic() < deadline, "every decision degraded: the store never answered in time"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, valkey_url: str, fixtures: Fixtures) -> Iterator[str]:
    redis.Redis.from_url(valkey_url).flushall()
    tmp = tmp_path_factory.mktemp("snippet")
    (tmp / "rules").mkdir()
    numbers = ", ".join(f'"{n}"' for n in NUMBERS)
    (tmp / "rules" / "fixture.yaml").write_text(f"""
site: fixture
origins: [http://127.0.0.1:{fixtures.server_port}]
phone: "+7 812 645-17-14"
reports: {{token: fixture-report-token-01}}
pools:
  - {{id: all, hold: 90s, numbers: [{numbers}]}}
rules:
  - id: hero
    swap:
      - {{selector: h1.hero, text: "{{{{ keyword(default='Кондиционеры') }}}}"}}
      - {{selector: .lead, text: Swapped lead}}
  - id: media
    swap:
      - {{selector: img.hero-image, src: /img/all.jpg, srcset: "/img/all.jpg 1x, /img/all@2x.jpg 2x"}}
      - {{selector: a.cta, href: "/catalog?q={{{{ phrase|urlencode }}}}"}}
      - {{selector: a.search, href: "{{{{ phrase }}}}"}}
      - {{selector: "#moscow-only", show: false}}
      - {{selector: "#promo", show: true}}
  - id: kazan-media
    priority: 5
    when: {{city: Казань}}
    swap: [{{selector: img.hero-image, src: /img/kazan.jpg}}]
  - id: catalog
    page: /catalog/**
    priority: 10
    swap:
      - {{selector: h1.hero, text: {CATALOG_HERO}}}
      - {{selector: "#submit", text: {CATALOG_BUTTON}}}
experiments:
  - id: e
    variants:
      - {{id: control, weight: 50}}
      - {{id: b, weight: 50, swap: [{{selector: "#variant-box", text: Variant B}}]}}
""")
    process, base = start(tmp, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_RULES_DIR=str(tmp / "rules"))
    ready_for_decisions(base)
    fixtures.service = base
    yield base
    stop(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with chromium() as instance:
        yield instance


@pytest.fixture
def page(browser: Browser, service: str) -> Iterator[Page]:
    # Headless Chromium says "HeadlessChrome" and is rightly treated as a bot: be a browser.
    context = browser.new_context(user_agent=BROWSER)
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.errors.append(str(error)))  # type: ignore[attr-defined]
    yield page
    context.close()


def url(fixtures: Fixtures, query: str = "", page: str = "page.html") -> str:
    return f"http://127.0.0.1:{fixtures.server_port}/{page}{query}"


class Held:
    """Requests matching `pattern` (the first `times`), waiting unanswered until the test lets
    each go."""

    def __init__(self, page: Page, pattern: str, times: int | None = None) -> None:
        self.page, self.routes = page, list[Route]()
        page.route(pattern, lambda route: self.routes.append(route), times=times)

    def __getitem__(self, index: int) -> Route:
        """The `index`-th request held, once it has reached the test: Playwright hands a route
        over a little after the page's own events, whenever the machine gets to it."""
        for _ in range(3000):
            if len(self.routes) > index:
                return self.routes[index]
            self.page.wait_for_timeout(10)  # lets Playwright deliver what it has
        raise AssertionError(f"request {index} never came; {len(self.routes)} held")


def pause_clock(page: Page) -> None:
    """Stop the page's clock before it loads: its timers (the snippet's time-out, heartbeats)
    fire only when the test runs the clock, however busy the machine is."""
    page.clock.install(time=PAUSED_AT)
    page.clock.pause_at(PAUSED_AT + datetime.timedelta(seconds=1))


def decided(page: Page) -> Any:
    return page.evaluate("new Promise((resolve) => swapline.ready(resolve))")


def decided_in_time(page: Page) -> Any:
    """The page's decision, reloaded while it is degraded: on a busy machine the store now and
    then misses its deadline, and the page rightly keeps its own number, which is not what
    the test asks about."""
    for _ in range(5):
        decision = decided(page)
        if not decision["degraded"]:
            return decision
        page.reload()
    raise AssertionError(f"five decisions in a row degraded: the store never answered in time: {decision}")


def text(page: Page, selector: str) -> str:
    return page.locator(selector).inner_text()


def report(service: str) -> Any:
    return httpx.get(f"{service}/v1/reports/fixture", headers=REPORT, timeout=60).json()


def forms(service: str) -> int:
    """Form conversions the service has counted, all pages together (each event once)."""
    return sum(row["totals"]["form"] for row in report(service)["pages"])


def outbox(page: Page) -> Any:
    """The events the snippet keeps until the service takes them."""
    return page.evaluate("JSON.parse(localStorage.swl_out || '[]')")


# In the page before the snippet: `settled` lists the status of each answer its fetches got (0
# for none). The snippet's own handler of an answer runs in the same turn, right after this one,
# so once a status shows here the snippet has dealt with that answer.
SETTLED = """(() => {
  const original = window.fetch;
  window.settled = [];
  window.fetch = (...args) => {
    const answer = original(...args);
    answer.then((r) => settled.push(r.status), () => settled.push(0));
    return answer;
  };
})()"""
# What the service answers an event while its store is down and the spool cannot keep it either.
DOWN = {"status": 503, "headers": {"retry-after": "30", "access-control-allow-origin": "*"},
        "content_type": "application/json",
        "body": '{"error": {"code": "store_unavailable", "message": "the store is down and the spool is full"}}'}


def test_text_swaps_land_as_text(page: Page, fixtures: Fixtures) -> None:
    page.goto(url(fixtures, "?utm_term=%3Cscript%3Ealert(1)%3C/script%3E%3Cb%3Ebold%3C/b%3E"))
    decided(page)
    assert text(page, "#hero") == "<script>alert(1)</script><b>bold</b>"
    assert page.locator("#hero *").count() == 0  # no element was made from the phrase
    assert text(page, "#lead") == "Swapped lead"
    assert text(page, "#frozen-hero") == "Frozen headline"  # data-swapline-noswap
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_text_swap_keeps_an_only_childs_text_node_and_replaces_several_children(page: Page,
                                                                                 fixtures: Fixtures) -> None:
    """A text goes into the element's own text node, down its only children (<h1><span>{title}
    </span></h1>, as frameworks render it); an element with several children, or with no text
    under its only child (an icon), has all of them replaced by the text, as it always had."""
    page.goto(url(fixtures))
    decided(page)
    swapped = page.evaluate("""() => {
        const box = document.createElement('div');
        box.innerHTML = '<h1 class="lead">Hello <em>you</em></h1><h1 class="lead"><span>Hello</span></h1>'
            + '<h1 class="lead"><img alt=""></h1>';
        const [several, only, icon] = box.children, kept = only.firstChild.firstChild;
        swapline.swap(box);
        return [several.innerHTML, only.innerHTML, kept.data, kept.parentNode === only.firstChild, icon.innerHTML];
    }""")
    assert swapped == ["Swapped lead", "<span>Swapped lead</span>", "Swapped lead", True, "Swapped lead"]


def test_the_number_is_replaced_in_every_format_and_tel_link(page: Page, fixtures: Fixtures) -> None:
    page.goto(url(fixtures))
    d = decided(page)["phone"]["digits"]  # e.g. 8127000001
    area, a, b, c = d[:3], d[3:6], d[6:8], d[8:]
    assert text(page, "#f1") == f"+7 ({area}) {a}-{b}-{c}"
    assert text(page, "#f2") == f"8 ({area}) {a}-{b}-{c}"
    assert text(page, "#f3") == f"+7 {area} {a} {b} {c}"
    assert text(page, "#f4") == f"8-{area}-{a}-{b}-{c}"
    assert text(page, "#f5") == f"+7{d}"
    assert page.inner_html("#f6") == f"<b>+7 ({area})</b> {a}-<i>{b}</i>-{c}"  # split over elements
    assert text(page, "#f7") == f"Звоните 8 {area} {a}{b}{c} круглосуточно"
    assert text(page, "#other") == "+7 (495) 645-17-14 and 18126451714 are other numbers"
    assert page.get_attribute("#tel1", "href") == f"tel:+7{d}"
    assert page.get_attribute("#tel2", "href") == f"tel:8({area}){a}-{b}-{c}"
    assert text(page, "#frozen-number").startswith("+7 (812) 645-17-14")  # data-swapline-noswap
    assert page.get_attribute("#frozen-tel", "href") == "tel:+78126451714"


REAL_WORLD = """(html) => {
    const box = document.createElement('div');
    box.innerHTML = html;
    document.body.appendChild(box);
    swapline.swap(box);
    return box.innerHTML;
}"""


@pytest.mark.parametrize(("printed", "expected"), [
    ("<p>+7 812 645\u201317\u201314</p>", "<p>+7 {a} {b}\u2013{c}\u2013{d}</p>"),  # en dashes
    ("<p>8\u2013812\u2013645\u201317\u201314</p>", "<p>8\u2013{a}\u2013{b}\u2013{c}\u2013{d}</p>"),
    ("<p>+7 812 645\u201117\u201114</p>", "<p>+7 {a} {b}\u2011{c}\u2011{d}</p>"),  # non-breaking hyphens
    ("<p>д. 28<br>+7 (812) 645-17-14</p>", "<p>д. 28<br>+7 ({a}) {b}-{c}-{d}</p>"),  # a digit, a tag, the number
    ("<p>офис 12<span>+7 (812) 645-17-14</span></p>", "<p>офис 12<span>+7 ({a}) {b}-{c}-{d}</span></p>"),
    # A postcode's last digit is no trunk prefix: the number after it is the number.
    ("<p>190008 (812) 645-17-14</p>", "<p>190008 ({a}) {b}-{c}-{d}</p>"),
    ("<p>190008<br>(812) 645-17-14</p>", "<p>190008<br>({a}) {b}-{c}-{d}</p>"),
    ("<p>190007 812 645 17 14</p>", "<p>190007 {a} {b} {c} {d}</p>"),
    # A site builder's text block (Tilda's): lines between <br>s, the number in each.
    ("<div>" + "<br>".join(["Звоните: +7 (812) 645-17-14"] * 7) + "</div>",
     "<div>" + "<br>".join(["Звоните: +7 ({a}) {b}-{c}-{d}"] * 7) + "</div>"),
    ('<a href="tel:+7%20812%20645-17-14">x</a>', '<a href="tel:+7 {a} {b}-{c}-{d}">x</a>'),  # percent-encoded
    ('<a href="tel:+78126451714" aria-label="Позвонить +7 812 645-17-14" title="+7 (812) 645-17-14">x</a>',
     '<a href="tel:+7{a}{b}{c}{d}" aria-label="Позвонить +7 {a} {b}-{c}-{d}" title="+7 ({a}) {b}-{c}-{d}">x</a>'),
    # What a form would submit, or a person is typing, stays as it is.
    ("<select><option>+7 812 645-17-14</option></select>", "<select><option>+7 812 645-17-14</option></select>"),
    ('<div contenteditable="true">+7 812 645-17-14</div>', '<div contenteditable="true">+7 812 645-17-14</div>'),
    ("<textarea>+7 812 645-17-14</textarea>", "<textarea>+7 812 645-17-14</textarea>"),
])
def test_numbers_as_real_pages_print_them(page: Page, fixtures: Fixtures, printed: str, expected: str) -> None:
    page.goto(url(fixtures))
    digits = decided(page)["phone"]["digits"]
    a, b, c, d = digits[:3], digits[3:6], digits[6:8], digits[8:]
    assert page.evaluate(REAL_WORLD, printed) == expected.format(a=a, b=b, c=c, d=d)
    assert page.errors == []  # type: ignore[attr-defined]


def test_the_title_keeps_the_sites_own_number(page: Page, fixtures: Fixtures) -> None:
    """A bookmark or the history keeps the title: a tracking number there would be called
    long after its visit, by then another visitor's."""
    page.goto(url(fixtures))
    digits = decided(page)["phone"]["digits"]
    page.evaluate("""() => {
        document.title = 'Климат | +7 812 645-17-14';
        document.body.insertAdjacentHTML('beforeend', '<p id="later">+7 812 645-17-14</p>');
    }""")  # one batch for the snippet's observer
    page.wait_for_function("document.getElementById('later').textContent !== '+7 812 645-17-14'")
    assert text(page, "#later").replace(" ", "").replace("-", "").endswith(digits)
    assert page.title() == "Климат | +7 812 645-17-14"


def test_content_added_later_is_swapped(page: Page, fixtures: Fixtures) -> None:
    page.goto(url(fixtures))
    d = decided(page)["phone"]["digits"]
    page.click("#popup")
    page.wait_for_function("document.getElementById('modal-lead').textContent === 'Swapped lead'")
    assert text(page, "#modal-phone") == f"+7 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}"
    page.click("#route")  # a single-page app swaps its whole view
    page.wait_for_function("document.getElementById('next-hero').textContent === 'Кондиционеры'")
    assert text(page, "#next-phone") == f"8 {d[:3]} {d[3:6]}-{d[6:8]}-{d[8:]}"


COUNT_VISITS = """() => {
    window.visited = 0;  // nodes the snippet's tree walkers hand out (the root they start from is not one)
    const create = Document.prototype.createTreeWalker;
    Document.prototype.createTreeWalker = function (...args) {
        const walker = create.apply(this, args), next = walker.nextNode.bind(walker);
        walker.nextNode = () => { const node = next(); if (node) window.visited++; return node; };
        return walker;
    };
}"""
CATALOGUE = """async (count) => {
    const list = document.getElementById('catalogue') || document.body.appendChild(document.createElement('ul'));
    list.id = 'catalogue';
    const before = window.visited;
    for (let i = 0; i < count; i++) list.appendChild(document.createElement('li')).textContent = 'Сплит-система ' + i;
    await new Promise((resolve) => setTimeout(resolve));  // the observer's records, delivered
    return window.visited - before;
}"""


def test_appending_to_a_long_list_reads_only_what_was_added(page: Page, fixtures: Fixtures) -> None:
    page.add_init_script(f"({COUNT_VISITS})()")
    page.goto(url(fixtures))
    decided(page)
    assert page.evaluate(CATALOGUE, 3000) >= 3000  # the catalogue itself, read once
    assert page.evaluate(CATALOGUE, 50) == 50  # infinite scroll: 50 items, one task; not 50 × 3,050


def test_a_page_that_pins_the_snippet_with_its_integrity_runs_it_compressed(page: Page, fixtures: Fixtures,
                                                                           service: str) -> None:
    plain = httpx.get(f"{service}/s.js", headers={"accept-encoding": "identity"})
    version = plain.headers["etag"].strip('"')
    integrity = "sha384-" + base64.b64encode(hashlib.sha384(plain.content).digest()).decode()
    with page.expect_response(f"**/s/{version}.js") as loaded:
        page.goto(url(fixtures, f"?pin={version}&integrity={quote(integrity)}"))
    assert loaded.value.headers["content-encoding"] == "br"  # Chromium asks for brotli
    assert decided(page)["vid"] and text(page, "#hero") != "Original headline"  # it ran: the headline swapped
    tampered = "sha384-" + base64.b64encode(hashlib.sha384(b"another file").digest()).decode()
    with page.expect_console_message(lambda message: "integrity" in message.text):
        page.goto(url(fixtures, f"?pin={version}&integrity={quote(tampered)}"))
    assert page.evaluate("typeof window.swapline") == "undefined"  # the browser refused to run it


SANDBOXED = """() => {  // as in a sandboxed frame: the page's cookie and storage throw
    const refuse = () => { throw new DOMException('The document is sandboxed', 'SecurityError'); };
    Object.defineProperty(Document.prototype, 'cookie', { get: refuse, set: refuse });
    Object.defineProperty(window, 'localStorage', { get: refuse });
}"""


def test_a_page_whose_cookie_and_storage_throw_still_gets_its_swaps(page: Page, fixtures: Fixtures) -> None:
    page.add_init_script(f"({SANDBOXED})()")
    page.goto(url(fixtures))
    answer = decided(page)
    assert answer and text(page, "#hero") != "Original headline"  # swapped all the same
    assert page.errors == []  # type: ignore[attr-defined]


def test_the_home_page_says_what_runs_and_leads_everywhere(page: Page, service: str) -> None:
    page.goto(f"{service}/")
    assert page.title() == "Home · Swapline"
    assert "store\tRedis/Valkey server" in page.inner_text("table").split("\n")  # the tests' own Valkey
    links = page.eval_on_selector_all("a", "(links) => links.map((link) => link.getAttribute('href'))")
    assert links == ["/dashboard/fixture", "/openapi.json", "/metrics"]  # no demo page: the demo site is not here
    page.click("text=Dashboard of")
    assert page.inner_text("h2") == "Sign in to the dashboard" and page.errors == []  # type: ignore[attr-defined]


def test_visitor_id_survives_reloads_in_cookie_and_storage(page: Page, fixtures: Fixtures) -> None:
    page.goto(url(fixtures))
    first = decided(page)["vid"]
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["value"], cookie["secure"]) == ("swl_vid", first, True)  # 127.0.0.1 counts as secure
    page.reload()
    assert decided(page)["vid"] == first
    page.context.clear_cookies()  # the cookie is gone: localStorage brings the same id back
    page.reload()
    assert decided(page)["vid"] == first


def shop(page: Page, scheme: str, tag: str = "") -> str:
    """A page of shop.example over `scheme`, with the snippet (`tag`: the script tag's other
    attributes), as the browser receives them; its decisions go unanswered. The visitor id the
    page view asked with."""
    html = f'<h1 class="hero">Shop</h1><script src="{scheme}://shop.example/s.js" data-site="fixture" {tag}></script>'
    page.route(f"{scheme}://shop.example/**", lambda route: route.fulfill(
        content_type="text/javascript" if route.request.url.endswith("/s.js") else "text/html",
        body=MINIFIED if route.request.url.endswith("/s.js") else html.encode()))
    with page.expect_request("**/v1/decide?**") as asked:
        page.goto(f"{scheme}://shop.example/")
    return parse_qs(urlsplit(asked.value.url).query)["vid"][0]


def test_the_visitor_id_cookie_is_secure_behind_tls_and_plain_http_keeps_a_plain_one(page: Page) -> None:
    vid = shop(page, "https")
    (cookie,) = page.context.cookies()
    assert (cookie["name"], cookie["value"], cookie["secure"]) == ("swl_vid", vid, True)
    assert 346 < (cookie["expires"] - time.time()) / 86400 < 348  # 347 days: under a year
    page.context.clear_cookies()
    vid = shop(page, "http")  # a plain-HTTP page can keep no Secure cookie, and keeps its own
    assert [(c["value"], c["secure"]) for c in page.context.cookies()] == [(vid, False)]


def test_over_plain_http_a_browser_without_storage_stays_one_visitor_by_its_cookie(page: Page) -> None:
    """An Android WebView without DOM storage: the cookie alone carries the id from page to page,
    or each page view would be a new visitor, and lease a number of its own."""
    page.add_init_script("Object.defineProperty(window, 'localStorage', "
                         "{get() { throw new DOMException('no storage', 'SecurityError'); }})")
    first = shop(page, "http")
    assert shop(page, "http") == first and page.context.cookies()[0]["value"] == first


def test_an_id_cookie_an_earlier_snippet_left_over_plain_http_is_read_and_goes_without_consent(page: Page) -> None:
    left = {"name": "swl_vid", "value": "an-earlier-visitor-0001", "url": "http://shop.example/"}
    page.context.add_cookies([left])  # type: ignore[list-item]
    shop(page, "http")
    assert page.evaluate("localStorage.swl_vid") == left["value"]  # the visitor goes on as they were
    page.evaluate("localStorage.clear()")
    shop(page, "http", 'data-consent="required"')
    assert page.context.cookies() == [] and page.evaluate("localStorage.length") == 0


def test_the_visit_goes_on_from_page_to_page(page: Page, fixtures: Fixtures) -> None:
    """The ad's phrase, headline and number stay on the next page, whose URL has none of them."""
    landing = url(fixtures, "?utm_source=yandex&utm_medium=cpc&utm_term=%D0%BA%D1%83%D0%BF%D0%B8%D1%82%D1%8C")
    page.goto(landing)
    assert decided(page)["visit"]["new"]
    first = decided_in_time(page)  # a reload, if the store missed its deadline, goes on with the visit
    page.goto(url(fixtures, "?next"), referer=landing)
    second = decided_in_time(page)
    assert not second["visit"]["new"]
    assert second["visit"]["id"] == first["visit"]["id"] and second["phrase"] == "купить"
    assert second["source"]["source"] == "yandex" and text(page, "#hero") == "купить"
    assert second["phone"]["number"] == first["phone"]["number"]
    fresh = page.context.browser.new_context(user_agent=BROWSER).new_page()  # another visitor: no visit yet
    fresh.goto(url(fixtures, "?next"))
    assert decided(fresh)["visit"]["new"] and decided(fresh)["phrase"] is None
    fresh.context.close()


def test_a_single_page_apps_routes_are_the_next_pages_of_the_visit(page: Page, fixtures: Fixtures,
                                                                     valkey_url: str) -> None:
    landing = url(fixtures, "?utm_source=yandex&utm_term=%D0%BA%D1%83%D0%BF%D0%B8%D1%82%D1%8C")
    page.goto(landing)
    first = decided(page)
    with page.expect_response("**/v1/decide?**") as routed:
        page.evaluate("history.pushState({}, '', '/catalog/item?colour=white')")
    second = routed.value.json()
    with page.expect_response("**/v1/decide?**") as back:
        page.go_back()  # popstate, to the landing page and its campaign again: still the same visit
    third = back.value.json()
    for answer in (second, third):  # the same visit, its phrase and number
        assert not answer["visit"]["new"] and answer["visit"]["id"] == first["visit"]["id"]
        assert answer["phrase"] == "купить" and answer["phone"]["number"] == first["phone"]["number"]
    journey = redis.Redis.from_url(valkey_url).lrange(f"sw:{{fixture|{first['vid']}}}:pages:{first['visit']['id']}",
                                                      0, -1)
    assert [entry.decode().split(" ", 1)[1] for entry in journey] == ["/page.html", "/catalog/item", "/page.html"]
    assert page.errors == []  # type: ignore[attr-defined]


# A single-page app's router, as the page's own script: each route renders its view into <main>
# from the app's template (the page's own texts), on pushState and on popstate.
ROUTER = """() => {
    const view = '<h1 class=hero id=hero>Original headline</h1><p class=lead id=lead>Original lead</p>'
        + '<form id=form onsubmit="event.preventDefault()"><button id=submit>Send</button></form>';
    const render = () => { document.getElementById('main').innerHTML = view; };
    const push = history.pushState;
    history.pushState = function (...args) { push.apply(this, args); render(); };
    addEventListener('popstate', render);
}"""


def showing(page: Page, selector: str, expected: str) -> None:
    """Wait until `selector`'s text is `expected`: a route's decision lands when its answer comes."""
    page.wait_for_function("([selector, expected]) => document.querySelector(selector).textContent === expected",
                           arg=[selector, expected], timeout=60_000)


def catalog_and_back(page: Page, fixtures: Fixtures, router: bool = False) -> list[Any]:
    """`/page.html` → pushState `/catalog/item` → back (popstate), each route's decision in the
    page before the next step; the three decisions. With `router`, the app renders each route's view."""
    page.goto(url(fixtures))
    first = decided_in_time(page)
    assert text(page, "#hero") == "Кондиционеры" and text(page, "#submit") == "Send"
    if router:
        page.evaluate(ROUTER)
    with page.expect_response("**/v1/decide?**", timeout=60_000) as routed:
        page.evaluate("history.pushState({}, '', '/catalog/item?colour=white')")
    showing(page, "#hero", CATALOG_HERO)
    assert text(page, "#submit") == CATALOG_BUTTON and text(page, "#lead") == "Swapped lead"
    with page.expect_response("**/v1/decide?**", timeout=60_000) as back:
        page.go_back()
    showing(page, "#hero", "Кондиционеры")  # home's decision has landed: the every-page headline again
    return [first, routed.value.json(), back.value.json()]


@pytest.mark.parametrize("router", [False, True], ids=["static-view", "rendered-view"])
def test_a_single_page_apps_route_shows_the_rules_of_that_route(page: Page, fixtures: Fixtures,
                                                                 router: bool) -> None:
    """A rule of `page: /catalog/**` outranks the every-page headline on the catalog route only;
    back on `/page.html` (popstate) its headline is gone. The three page views are one visit."""
    first, *routes = catalog_and_back(page, fixtures, router)
    assert CATALOG_HERO not in page.inner_text("body") and text(page, "#lead") == "Swapped lead"
    for answer in routes:
        assert not answer["visit"]["new"] and answer["visit"]["id"] == first["visit"]["id"]
    assert [swap["value"] for swap in routes[0]["swaps"] if swap["selector"] == "#submit"] == [CATALOG_BUTTON]
    assert all(swap["selector"] != "#submit" for swap in routes[1]["swaps"])  # home's decision leaves it alone
    assert page.errors == []  # type: ignore[attr-defined]


@pytest.mark.parametrize("router", [False, True], ids=["static-view", "rendered-view"])
def test_a_route_left_behind_takes_its_swaps_with_it(page: Page, fixtures: Fixtures, router: bool) -> None:
    """What only the catalog route's rule set (its button text) goes back to the page's own when
    the app leaves that route, and a view the app renders anew does not keep it either."""
    catalog_and_back(page, fixtures, router)
    assert text(page, "#submit") == "Send"  # the page's own button, as on the first page view


def test_a_swap_writes_into_the_text_node_the_app_keeps_and_the_next_route_shows_the_apps_text(
        page: Page, fixtures: Fixtures) -> None:
    """React keeps the text node of a persistent layout's `<button>{label}</button>` and writes
    the next route's label into it: the swap writes its text into that very node, so the app's
    next label shows, and the route left behind does not put back the label of the route
    before it."""
    page.goto(url(fixtures))
    decided_in_time(page)
    page.evaluate("window.label = document.getElementById('submit').firstChild")  # the node the app keeps
    with page.expect_response("**/v1/decide?**", timeout=60_000):
        page.evaluate("history.pushState({}, '', '/catalog/item?colour=white')")
    showing(page, "#submit", CATALOG_BUTTON)
    assert page.evaluate("label.parentNode === document.getElementById('submit') && label.data") == CATALOG_BUTTON
    with page.expect_response("**/v1/decide?**", timeout=60_000):  # the app's router: the route, then its label
        page.evaluate("history.pushState({}, '', '/page.html?colour=white'); label.data = 'Send now'")
    showing(page, "#hero", "Кондиционеры")  # home's decision has landed
    assert text(page, "#submit") == "Send now"
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_text_the_app_wrote_after_a_swap_is_not_put_back_when_the_route_is_left(page: Page,
                                                                                  fixtures: Fixtures) -> None:
    """A route left behind puts back what its swaps found only where the page still shows what
    they wrote: a button the app has written its own text into since (on its way to the next
    route) keeps the app's text, not the one it had before the swap."""
    page.goto(url(fixtures))
    decided_in_time(page)
    page.evaluate("document.getElementById('submit').innerHTML = 'Send <b>now</b>'")  # the swap replaces all that
    with page.expect_response("**/v1/decide?**", timeout=60_000):
        page.evaluate("history.pushState({}, '', '/catalog/item?colour=white')")
    showing(page, "#submit", CATALOG_BUTTON)
    with page.expect_response("**/v1/decide?**", timeout=60_000):
        page.evaluate("history.pushState({}, '', '/page.html?colour=white');"
                      "document.getElementById('submit').textContent = 'Send again'")
    showing(page, "#hero", "Кондиционеры")  # home's decision has landed: the headline put back and swapped
    assert text(page, "#submit") == "Send again"
    assert page.errors == []  # type: ignore[attr-defined]


GO = """async (path) => {
    go(path);  // the app's router: pushState, then the route's title and footer, its own number in it
    await new Promise((resolve) => setTimeout(resolve));  // the snippet's observer has had its turn
}"""


def test_a_number_the_app_writes_again_on_every_route_is_replaced_on_every_route(page: Page,
                                                                                fixtures: Fixtures) -> None:
    """The guard against a page that writes its own text back counts per route: an app that
    writes its footer's number again on each route shows the visitor's number on the fifth
    route and after as on the first (a page that fights within one route still wins: see
    test_a_page_that_writes_its_text_back_wins_after_a_few_rounds)."""
    page.goto(url(fixtures, page="spa/"))
    d = decided_in_time(page)["phone"]["digits"]
    number = f"+7 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}"
    assert text(page, "#footer") == f"Footer phone: {number} (/spa/)"
    for step in range(1, 7):
        path = f"/spa/step-{step}"
        with page.expect_response("**/v1/decide?**", timeout=60_000) as routed:
            page.evaluate(GO, path)
        assert text(page, "#footer") == f"Footer phone: {number} ({path})", f"route {step}"
        assert routed.value.json()["phone"]["digits"] == d  # the visit's number, route after route
    assert page.errors == []  # type: ignore[attr-defined]


# In the page before the snippet: `answered` counts the decisions it has read, once the snippet's
# own handler has had each (it runs in the microtask after the body's, this count in a task after).
ANSWERED = """(() => {
    const json = Response.prototype.json;
    window.answered = 0;
    Response.prototype.json = function () {
        const body = json.call(this);
        body.then(() => setTimeout(() => answered++), () => {});
        return body;
    };
})()"""


def test_a_route_shows_what_the_app_renders_until_its_own_answer_and_if_none_comes(page: Page,
                                                                                  fixtures: Fixtures) -> None:
    """The last route's texts are not the next's: the route's title stays as the app renders it
    while its answer is on the way, and if the answer never comes; a late answer of a route
    the visitor has left changes nothing."""
    page.add_init_script(ANSWERED)
    decide = Held(page, "**/v1/decide?**")
    page.goto(url(fixtures, page="spa/"))
    decide[0].fallback()
    page.wait_for_function("document.getElementById('route-title').textContent === 'Кондиционеры'")
    page.evaluate(GO, "/catalog/item")
    asked = decide[1]
    assert text(page, "#route-title") == "Route /catalog/item"  # not the last route's «Кондиционеры»
    with page.expect_event("requestfailed"):
        asked.abort()  # the service does not answer
    page.evaluate(GO, "/catalog/item")  # the app renders the route again: still its own title
    assert text(page, "#route-title") == "Route /catalog/item"

    page.evaluate(GO, "/catalog/left")
    left = decide[2]
    page.evaluate(GO, "/spa/next")
    decide[3].fallback()
    page.wait_for_function("answered === 2 && document.getElementById('route-title').textContent === 'Кондиционеры'")
    left.fallback()  # the catalog's answer, come after the visitor went on
    page.wait_for_function("answered === 3")
    assert text(page, "#route-title") == "Кондиционеры" and CATALOG_HERO not in page.content()


def test_a_redirect_by_replace_state_is_decided_as_the_page_it_went_to(page: Page, fixtures: Fixtures) -> None:
    """React Router's <Navigate replace> and `navigate(to, {replace: true})` go to the next page
    with replaceState: the page is that one, its rules and its place in the journey. An app that
    keeps its own state with replaceState of the address it has (Next.js does) is no new page."""
    page.add_init_script(ASKED)
    page.goto(url(fixtures, page="spa/"))
    decided_in_time(page)
    with page.expect_response("**/v1/decide?**", timeout=60_000) as redirected:
        page.evaluate("history.replaceState({}, '', '/catalog/item')")
    assert CATALOG_HERO in [swap["value"] for swap in redirected.value.json()["swaps"]]  # the catalog's rule
    assert "url=http%3A%2F%2F127.0.0.1" in redirected.value.url and "%2Fcatalog%2Fitem" in redirected.value.url
    showing(page, "#route-title", CATALOG_HERO)
    page.evaluate("history.replaceState({kept: 1}, '', location.href)")
    with page.expect_response("**/v1/decide?**", timeout=60_000):
        page.evaluate("history.pushState({}, '', '/spa/next')")  # the next route: asked after the replaceState
    assert page.evaluate("asked") == 3  # the page, the redirect, the route: nothing for the state kept


def test_what_data_hide_names_hides_again_while_a_route_waits_for_its_answer(page: Page, fixtures: Fixtures) -> None:
    """A route's headline would show the app's own text, then the rule's: it waits hidden, as on
    the first page view, and shows when the answer comes."""
    visibility = "() => getComputedStyle(document.querySelector('#hero')).visibility"
    page.goto(url(fixtures))
    decided_in_time(page)
    assert page.evaluate(visibility) == "visible"
    decide = Held(page, "**/v1/decide?**")
    page.evaluate("history.pushState({}, '', '/page.html?colour=white')")
    asked = decide[0]
    assert page.evaluate(visibility) == "hidden" and page.evaluate(
        "getComputedStyle(document.querySelector('#lead')).visibility") == "visible"  # only what data-hide names
    asked.fallback()
    page.wait_for_function(f"({visibility})() === 'visible'", timeout=60_000)


# In the page before the snippet: `asked` counts the decisions it asks for, as it asks.
ASKED = """(() => {
    const original = window.fetch;
    window.asked = 0;
    window.fetch = (...args) => {
        if (String(args[0]).includes('/v1/decide?')) asked++;
        return original(...args);
    };
})()"""


def test_an_in_page_link_is_no_new_page_view(page: Page, fixtures: Fixtures) -> None:
    """Chrome fires popstate when a link goes to a place in the page (#footer): that is the same
    page, and asks for no decision; a route to another path still does."""
    page.add_init_script(ASKED)
    page.goto(url(fixtures, page="spa/"))
    decided_in_time(page)
    moved = page.evaluate("""() => new Promise((resolve) => {
        let popped = false;
        addEventListener('popstate', () => (popped = true), {once: true});
        addEventListener('hashchange', () => resolve([popped, location.hash, asked]), {once: true});
        document.getElementById('to-numbers').click();
    })""")
    assert moved == [True, "#footer", 1]  # popstate came (before hashchange), and no second decision
    page.evaluate(GO, "/spa/about")
    assert page.evaluate("asked") == 2  # another path: the next page of the visit


def test_without_consent_nothing_identifies_the_visitor(page: Page, fixtures: Fixtures) -> None:
    sent: list[str] = []
    page.on("request", lambda r: sent.append(r.url))
    page.goto(url(fixtures, "?consent=required&utm_term=%D0%BA%D1%83%D0%BF%D0%B8%D1%82%D1%8C"))
    before = decided(page)
    assert before["consent"] is False and before["phone"] is None  # no number without consent
    assert text(page, "#hero") == "купить"  # texts still swap
    page.click("#submit")  # a form, before consent: no beacon
    assert page.context.cookies() == [] and page.evaluate("localStorage.length") == 0
    assert "consent=0" in next(u for u in sent if "/v1/decide" in u)

    with page.expect_response("**/v1/decide?**") as consented:
        page.evaluate("swapline.consent(true)")
    after = consented.value.json()
    assert "consent" not in after and after["phone"]["kind"] == "lease"  # the visit, its number, the page view
    with page.expect_request("**/v1/events"):
        page.click("#submit")
    assert sum("/v1/events" in u for u in sent) == 1  # the form after consent, and none before it
    kept = page.evaluate("[localStorage.swl_vid, !!localStorage.swl_visit, localStorage.swl_consent]")
    assert kept == [after["vid"], True, "1"] and page.context.cookies()[0]["value"] == after["vid"]

    page.reload()  # consent is remembered: the same visitor, with a number, no consent=0
    again = decided_in_time(page)
    assert again["vid"] == after["vid"] and (again["phone"] or {}).get("number") == after["phone"]["number"], again
    page.evaluate("swapline.consent(false)")  # withdrawn: what identified the visitor is gone
    assert page.context.cookies() == [] and page.evaluate("localStorage.length") == 0


def test_consent_on_the_next_page_keeps_the_campaign_the_visitor_landed_with(page: Page, fixtures: Fixtures) -> None:
    """Consent managers ask on every page until the visitor answers: one who lands from an ad and
    says yes on the next page starts the visit there, and its campaign is the landing page's."""
    page.goto(url(fixtures, "?consent=required&utm_source=yandex&utm_medium=cpc&utm_campaign=spring"))
    assert decided(page)["consent"] is False
    with page.expect_navigation():  # a link followed: the landing page is the next one's referrer
        page.evaluate(f"location.href = {url(fixtures, '?consent=required&page=2')!r}")
    assert decided(page)["consent"] is False
    with page.expect_response("**/v1/decide?**consent=1**") as consented:
        page.evaluate("swapline.consent(true)")
    source = consented.value.json()["source"]
    assert (source["source"], source["medium"], source["campaign"]) == ("yandex", "cpc", "spring")


def test_consent_given_again_asks_for_no_page_view_again(page: Page, fixtures: Fixtures) -> None:
    """Consent managers say yes again on every page (Cookiebot's and OneTrust's callbacks): each
    page is still one page view."""
    asked: list[str] = []
    page.on("request", lambda r: "/v1/decide" in r.url and asked.append(r.url))
    page.goto(url(fixtures, "?consent=required"))
    decided(page)
    with page.expect_response("**/v1/decide?**consent=1**"):
        page.evaluate("swapline.consent(true)")
    with page.expect_request("**/v1/events"):  # a request sent after whatever the calls send
        page.evaluate("swapline.consent(true); swapline.consent(true); swapline.goal('after')")
    page.reload()  # consent remembered: the banner's yes on load is no news either
    decided(page)
    with page.expect_request("**/v1/events"):
        page.evaluate("swapline.consent(true); swapline.goal('after')")
    assert ["consent=0" in u for u in asked] == [True, False, False]


def test_an_answer_that_comes_after_a_later_requests_is_not_the_pages(page: Page, fixtures: Fixtures) -> None:
    """A consent manager says yes while the page view without consent is still on its way, and
    that answer comes last: the page keeps the one with consent, its number and its token."""
    without = Held(page, "**/v1/decide?**consent=0**", times=1)  # within the fixture's long time-out
    page.goto(url(fixtures, "?consent=required"))
    late = without[0]
    with page.expect_response("**/v1/decide?**consent=1**") as consented:
        page.evaluate("swapline.consent(true)")
    answer = consented.value.json()
    with page.expect_response("**/v1/decide?**consent=0**") as came:
        late.fallback()
    assert came.value.json()["consent"] is False
    page.evaluate("swapline.swap()")  # a walk after the late answer: the page is the consented one's
    assert decided(page)["token"] == answer["token"] == page.evaluate("localStorage.swl_visit")
    with page.expect_response("**/v1/events") as form:
        page.click("#submit")
    assert form.value.json()["outcome"] == "counted"  # not a preview's, counted for nobody


def test_forms_and_tel_clicks_arrive_as_beacons_and_show_in_the_report(page: Page, fixtures: Fixtures,
                                                                       service: str) -> None:
    # This page's row: other tests' pages (a single-page app's routes) have rows of their own.
    before = [row for row in report(service)["pages"] if row["page"] == "/page.html"]
    pause_clock(page)  # no heartbeat among the events, however long the test takes
    page.goto(url(fixtures))
    decided(page)
    beacon = "**/v1/events"
    tap = "document.getElementById('tel1').dispatchEvent(new MouseEvent('click', {bubbles: true}))"
    with page.expect_response(beacon) as form:
        page.click("#submit")
    with page.expect_response(beacon) as tel_click:
        page.evaluate(tap)
    with page.expect_response(beacon) as goal:
        page.evaluate("swapline.goal('newsletter')")
    # A page view's forms count once, as do its taps: a double click on a submit button, a
    # form that checks its fields by script and is sent again, a quiz's steps; a second tap.
    with page.expect_response(beacon) as form_again:
        page.dblclick("#submit")
    with page.expect_response(beacon) as tap_again:
        page.evaluate(tap)
    # The service answers once it has counted an event: the report shows all three now.
    assert [answer.value.json()["outcome"] for answer in (form, tel_click, goal, form_again, tap_again)] == [
        "counted", "counted", "counted", "duplicate", "duplicate"]
    (after,) = [row for row in report(service)["pages"] if row["page"] == "/page.html"]
    kinds = ("form", "tel_click", "goal")
    for figure in ("converted", "totals"):
        assert {kind: after[figure][kind] - (before[0][figure][kind] if before else 0) for kind in kinds} == {
            "form": 1, "tel_click": 1, "goal": 1}, figure
    page.goto(url(fixtures))  # the visitor's next page: a form of its own
    decided(page)
    with page.expect_response(beacon) as next_page_form:
        page.evaluate("document.getElementById('submit').click()")
    assert next_page_form.value.json()["outcome"] == "counted"


def test_a_thank_you_pages_goal_waits_for_the_tag_with_the_load_event(page: Page, fixtures: Fixtures) -> None:
    """The tag is async: an inline script calls swapline only once it has run (README)."""
    page.add_init_script('addEventListener("load", () => window.swapline && swapline.goal("thanks"))')
    with page.expect_response("**/v1/events") as goal:
        page.goto(url(fixtures))
    assert goal.value.request.post_data_json["name"] == "thanks" and goal.value.json()["outcome"] == "counted"


# The store down (503), and a beacon limit reached (429): both say "later".
@pytest.mark.parametrize("refusal", [DOWN, {**DOWN, "status": 429}])
def test_a_form_the_service_refused_is_sent_again_from_the_next_page(page: Page, fixtures: Fixtures,
                                                                     service: str, refusal: dict[str, Any]) -> None:
    before = forms(service)
    pause_clock(page)  # no heartbeat among the events, however long the test takes
    page.add_init_script(SETTLED)
    page.goto(url(fixtures))
    decided(page)
    page.route("**/v1/events", lambda route: route.fulfill(**refusal), times=1)
    with page.expect_request("**/v1/events") as sent:
        page.click("#submit")
    page.wait_for_function(f"settled.includes({refusal['status']})")
    form = sent.value.post_data_json
    assert outbox(page) == [form]  # kept, with its id and token
    with page.expect_response("**/v1/events") as again:
        page.goto(url(fixtures))  # the visitor's next page
    assert again.value.request.post_data_json == form
    assert again.value.status == 202 and again.value.json()["outcome"] == "counted"
    page.wait_for_function("localStorage.swl_out === '[]'")
    assert forms(service) - before == 1  # the service answered after counting: no waiting for the report


def test_an_event_whose_page_was_left_unanswered_is_sent_again_and_counted_once(page: Page, fixtures: Fixtures,
                                                                                service: str) -> None:
    before = forms(service)
    pause_clock(page)
    page.goto(url(fixtures))
    decided(page)
    held = Held(page, "**/v1/events")  # nothing answers until the test says
    with page.expect_request("**/v1/events") as sent:
        page.click("#submit")
    with page.expect_request("**/v1/events") as resent:
        page.goto(url(fixtures))  # the visitor moves on before the service answered
    assert resent.value.post_data_json == sent.value.post_data_json
    assert len(outbox(page)) == 1
    first, second = held[0], held[1]
    # The first copy reaches the service and is counted; its answer has no page to go to.
    assert first.fetch().json()["outcome"] == "counted"
    first.abort()
    with page.expect_response("**/v1/events") as answer:
        second.fallback()
    assert answer.value.status == 202 and answer.value.json()["outcome"] == "duplicate"
    page.wait_for_function("localStorage.swl_out === '[]'")
    assert forms(service) - before == 1


@pytest.mark.parametrize("stored", ["null", "5", "{}", "not json"])
def test_an_outbox_the_snippet_did_not_write_breaks_nothing(page: Page, fixtures: Fixtures, service: str,
                                                           stored: str) -> None:
    page.goto(url(fixtures))
    page.evaluate("(value) => localStorage.swl_out = value", stored)
    page.reload()
    decided(page)
    with page.expect_response("**/v1/events") as answered:
        page.click("#submit")
    assert answered.value.status == 202 and page.errors == []  # type: ignore[attr-defined]


def test_an_event_the_service_will_never_take_is_not_sent_again(page: Page, fixtures: Fixtures) -> None:
    pause_clock(page)
    page.goto(url(fixtures))
    decided(page)

    def forge(route: Route) -> None:  # the service refuses a token it did not sign: 401
        event = route.request.post_data_json
        assert isinstance(event, dict)
        route.continue_(post_data=orjson.dumps({**event, "token": "forged." + event["token"]}))

    page.route("**/v1/events", forge, times=1)
    with page.expect_response("**/v1/events") as refused:
        page.click("#submit")
    assert refused.value.status == 401 and refused.value.json()["error"]["code"] == "invalid_token"
    page.wait_for_function("localStorage.swl_out === '[]'")  # the snippet read the refusal
    sent: list[Any] = []

    def seen(request: Request) -> None:
        if request.url.endswith("/v1/events"):
            sent.append(request.post_data_json)

    page.on("request", seen)
    page.goto(url(fixtures))
    decided(page)
    with page.expect_request("**/v1/events"):
        page.evaluate("swapline.goal('marker')")  # sent after anything the page sends on its decision
    assert [event["type"] for event in sent] == ["goal"]


# A page going to the background, as a browser shows it to scripts (both properties agree), and
# the event it fires at the document (which bubbles to the window).
HIDE = """Object.defineProperty(document, 'visibilityState', {value: '%s', configurable: true});
Object.defineProperty(document, 'hidden', {value: %s, configurable: true})"""
SEEN = ";document.dispatchEvent(new Event('visibilitychange', {bubbles: true}))"


def test_heartbeats_only_while_the_page_is_visible(page: Page, fixtures: Fixtures) -> None:
    beats: list[str] = []
    page.on("request", lambda r: r.url.endswith("/v1/events") and beats.append(r.url))  # only beats here
    pause_clock(page)
    page.goto(url(fixtures))
    assert decided(page)["phone"]["hold"] == 90  # a beat every 30 s
    with page.expect_request("**/v1/events", timeout=60_000):
        page.clock.run_for(31_000)
    assert len(beats) == 1
    page.evaluate(HIDE % ("hidden", "true"))
    page.clock.run_for(120_000)
    page.evaluate(HIDE % ("visible", "false"))
    with page.expect_request("**/v1/events", timeout=60_000):
        page.clock.run_for(31_000)
    # Requests are reported in the order they were sent: a beat while hidden would show before this one.
    assert len(beats) == 2


def given_away(number: str, fixtures: Fixtures, valkey_url: str) -> None:
    """While the page is hidden, its number's hold ends, before any other number's, and the
    next visitor to come gets it."""
    redis.Redis.from_url(valkey_url).zadd(PoolKeys.of("fixture", "all").held, {number: -1})
    other = httpx.get(f"{fixtures.service}/v1/decide", params={"site": "fixture", "url": "/", "vid": f"other-{number}"},
                      headers={**BROWSER_HEADERS, "origin": url(fixtures).rsplit("/", 1)[0]}, timeout=60).json()
    assert other["phone"]["number"] == number


def test_a_page_seen_again_after_its_number_went_to_another_visitor_asks_for_another(
        page: Page, fixtures: Fixtures, valkey_url: str) -> None:
    """A tab hidden (or a page kept in the browser's back/forward cache) for longer than its
    number's hold, while the pool gave the number to the next visitor. Seen again, the page
    beats at once, hears (205) that its visitor no longer holds the number, and asks again: a
    call to the number it showed would be the other visitor's."""
    sent: list[str] = []
    page.on("request", lambda r: "/v1/" in r.url and sent.append(r.url.split("?")[0].rsplit("/", 1)[1]))
    pause_clock(page)  # no heartbeat but the one the test asks about
    page.goto(url(fixtures))
    before = decided(page)
    number = before["phone"]["number"]
    area, a, b, c = before["phone"]["digits"][:3], *re.findall(r"\d+", before["phone"]["national"])[2:]
    assert text(page, "#f1") == f"+7 ({area}) {a}-{b}-{c}"
    page.evaluate(HIDE % ("hidden", "true") + SEEN)
    given_away(number, fixtures, valkey_url)
    with page.expect_response("**/v1/decide?**", timeout=60_000) as asked:
        page.evaluate(HIDE % ("visible", "false") + SEEN)
    after = asked.value.json()
    assert after["phone"]["number"] not in (None, number)
    assert after["visit"] == {**before["visit"], "new": False}  # the same visit: another page view of it
    digits = after["phone"]["digits"]
    showing(page, "#f1", f"+7 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}")
    assert text(page, "#f7") == f"Звоните 8 {digits[:3]} {digits[3:]} круглосуточно"
    assert page.get_attribute("#tel1", "href") == f"tel:+7{digits}"
    assert sent == ["decide", "events", "decide"]  # one beat, when seen: none while hidden


def test_a_page_back_from_the_browsers_cache_after_its_number_went_to_another_visitor_asks_for_another(
        browser: Browser, fixtures: Fixtures, valkey_url: str) -> None:
    """Chromium's own back/forward cache (which Playwright turns off unless told): the page comes
    back as it was left, the number it showed with it, and asks again as it is shown."""
    cached = browser.browser_type.launch(executable_path=str(CHROMIUM), args=ARGS,
                                         ignore_default_args=["--disable-back-forward-cache"])
    try:
        page = cached.new_page(user_agent=BROWSER)
        page.goto(url(fixtures))
        number = decided_in_time(page)["phone"]["number"]
        page.evaluate("window.left = true")  # kept only if the page is restored, not loaded again
        page.goto(url(fixtures, page="media.html"))  # the site's next page
        decided(page)
        given_away(number, fixtures, valkey_url)
        with page.expect_response("**/v1/decide?**", timeout=60_000) as asked:
            page.go_back(wait_until="commit")  # a page restored from the cache fires no load event
        assert page.evaluate("window.left")  # the page as it was left, from the cache
        after = asked.value.json()["phone"]
        assert after["number"] not in (None, number)
        digits = after["digits"]
        showing(page, "#f1", f"+7 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}")
    finally:
        cached.close()


def test_a_page_whose_library_gives_arrays_a_tojson_sends_its_events_once(page: Page, fixtures: Fixtures) -> None:
    """Prototype.js up to 1.6 gives arrays a toJSON, so the outbox is stored as one string: its
    characters are no events to send from the next page (they were, a request each)."""
    events: list[str] = []
    page.on("request", lambda r: r.url.endswith("/v1/events") and events.append(r.post_data or ""))
    page.add_init_script("Array.prototype.toJSON = function () { return '[' + this.map((item) => "
                         "JSON.stringify(item)).join(',') + ']' }")
    pause_clock(page)
    page.goto(url(fixtures))
    decided(page)
    with page.expect_response("**/v1/events"):
        page.evaluate("document.getElementById('tel1').dispatchEvent(new MouseEvent('click', {bubbles: true}))")
    page.goto(url(fixtures))  # the next page sends what the outbox holds
    decided(page)
    page.evaluate("swapline.swap()")  # a task after the decision's: its sends have gone
    assert len(events) == 1 and orjson.loads(events[0])["type"] == "tel_click", events[:5]


def test_a_tab_opened_in_the_background_asks_for_nothing_until_it_is_seen(page: Page, fixtures: Fixtures) -> None:
    sent: list[str] = []
    page.on("request", lambda r: "/v1/" in r.url and sent.append(r.url))
    page.add_init_script(HIDE % ("hidden", "true"))  # opened with a middle click, say
    page.goto(url(fixtures))
    page.wait_for_function("typeof swapline === 'object'")  # the snippet has run
    with page.expect_request("**/v1/decide?**"):
        page.evaluate(HIDE % ("visible", "false") + SEEN)
    assert decided(page)["phone"]["kind"] == "lease"
    assert sum("/v1/decide" in u for u in sent) == 1  # requests show in the order they were sent: none before


def test_js_api_swaps_a_detached_node(page: Page, fixtures: Fixtures) -> None:
    page.goto(url(fixtures))
    decided(page)
    swapped = page.evaluate("""() => {
        const box = document.createElement('div');
        box.innerHTML = '<p class="lead">x</p><span>+7 (812) 645-17-14</span>';
        swapline.swap(box);
        return [box.querySelector('p').textContent, box.querySelector('span').textContent];
    }""")
    assert swapped[0] == "Swapped lead" and swapped[1] != "+7 (812) 645-17-14"


def test_preview_forces_a_variant_and_records_nothing(page: Page, fixtures: Fixtures, service: str) -> None:
    exposed_before = sum(p["visitors"] for p in report(service)["pages"])
    page.goto(url(fixtures, "?swapline_preview=e:b"))
    decision = decided(page)
    assert decision["preview"] is True and decision["experiments"] == {"e": "b"}
    assert text(page, "#variant-box") == "Variant B"
    # The pool's first number, as the page prints its own: leased by nobody (no heartbeat renews it).
    assert decision["phone"]["kind"] == "preview" and "heartbeat" not in decision["phone"]
    assert text(page, "#f1") == "+7 (812) 700-00-01" and decision["phone"]["international"] == NUMBERS[0]
    assert sum(p["visitors"] for p in report(service)["pages"]) == exposed_before


def test_a_preview_link_between_two_pages_leaves_the_visit_as_it_was(page: Page, fixtures: Fixtures) -> None:
    """A visitor (a marketer, say) opens a preview link and goes on: their next page is the next
    page of their own visit, not of the preview's, which the service never recorded."""
    own = decided(page.goto(url(fixtures)) and page)
    link = "?swapline_preview_city=" + quote("Казань") + "&utm_term=" + quote("кондиционер")
    preview = decided(page.goto(url(fixtures, link)) and page)
    assert preview["preview"] is True and preview["phrase"] == "кондиционер"
    sent: list[str] = []
    page.on("request", lambda request: "/v1/decide?" in request.url and sent.append(request.url))
    after = decided(page.goto(url(fixtures)) and page)
    assert parse_qs(urlsplit(sent[0]).query)["visit"] == [own["token"]]
    assert after["visit"]["id"] == own["visit"]["id"] and not after["visit"]["new"] and after["phrase"] is None


def test_only_the_targeted_elements_wait_and_for_at_most_a_second(page: Page, fixtures: Fixtures) -> None:
    fixtures.mode = "slow"
    fixtures.release.clear()
    fixtures.answered.clear()
    pause_clock(page)  # the snippet's second passes when the test says, not when the machine gets to it
    page.goto(url(fixtures, "?service=self&timeout=default"), wait_until="commit")
    page.wait_for_function("window.swapline !== undefined")  # the snippet runs and asks the service
    visibility = "(s) => getComputedStyle(document.querySelector(s)).visibility"
    assert page.evaluate(visibility, "#hero") == "hidden"
    assert page.evaluate(visibility, "#lead") == "visible" and page.evaluate(visibility, "#f1") == "visible"
    page.clock.run_for(999)
    assert page.evaluate(visibility, "#hero") == "hidden"
    page.clock.run_for(1)  # a second after the snippet started: it gives up, whatever the request does
    page.wait_for_function("getComputedStyle(document.querySelector('#hero')).visibility === 'visible'")
    assert decided(page) is None
    fixtures.release.set()  # the service answers now: too late, ignored
    assert fixtures.answered.wait(60)
    assert text(page, "#hero") == "Original headline" and text(page, "#f1") == "+7 (812) 645-17-14"
    assert decided(page) is None
    assert page.errors == []  # type: ignore[attr-defined]


def test_a_failing_service_leaves_the_page_as_it_was(page: Page, fixtures: Fixtures) -> None:
    fixtures.mode = "down"
    page.goto(url(fixtures, "?service=self"))
    assert decided(page) is None
    assert text(page, "#hero") == "Original headline" and text(page, "#f1") == "+7 (812) 645-17-14"
    page.click("#submit")  # the page still works, and no beacon is sent for a failed decision
    assert page.errors == []  # type: ignore[attr-defined]


def test_the_demo_page_works_on_any_port(browser: Browser, tmp_path: Path, valkey_url: str) -> None:
    from tests.browser import ARTIFACTS

    process, base = start(tmp_path, SWAPLINE_REDIS_URL=valkey_url, SWAPLINE_TRUSTED_PROXIES="127.0.0.1/32")
    try:
        context = browser.new_context(user_agent=BROWSER, extra_http_headers={"x-forwarded-for": "95.161.0.1"})
        page = context.new_page()
        pause_clock(page)  # the demo page keeps the snippet's 1 s budget: never run out on a busy machine
        page.goto(f"{base}/demo/?utm_term=купить+кондиционер")
        decision = decided_in_time(page)  # a batch on a busy machine may miss the store's 0.2 s
        assert text(page, "h1.hero") == "Купить кондиционер в Санкт-Петербурге"
        assert decision["phone"]["pool"] == "saint-petersburg"
        assert re.sub(r"\D", "", text(page, "header a")).endswith(decision["phone"]["digits"])
        page.wait_for_function("document.getElementById('decision').textContent.includes('RU-SPE')")
        with page.expect_response("**/v1/events") as beacon:
            page.click("#cta")  # not a form or tel link: nothing sent...
            page.fill("input[name=phone]", "+79990000000")
            page.click("form button")  # ...a form is
        assert beacon.value.status == 202  # same-origin beacons pass CORS
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
        context.close()
    finally:
        stop(process)
