"""GET /v1/decide against the real app, the real store and the real GeoLite2 database."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from service.tracking import counters, visits
from service.tracking.pools import PoolKeys
from service.tracking.tokens import TokenSigner
from tests.conftest import BROWSER_HEADERS, SECRET, Clock, site_client
from tests.test_store import day_counts

SPB = "95.161.0.1"  # GeoLite2: Saint Petersburg, RU-SPE
MOSCOW = "46.242.0.1"  # GeoLite2: Moscow, RU-MOW
VID = "visitor-0000000000001"
YANDEXBOT = "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)"


def decide(client: TestClient, ip: str = SPB, **params: str) -> Any:
    query = {"site": "demo", "url": "http://127.0.0.1:8000/", "vid": VID, **params}
    response = client.get("/v1/decide", params=query, headers={"x-forwarded-for": ip})
    assert response.status_code == 200, response.text
    return response.json()


def swaps(body: dict[str, Any]) -> dict[str, str]:
    return {swap["selector"]: swap["text"] for swap in body["swaps"]}


def test_answer_has_the_contracted_fields(client: TestClient) -> None:
    body = decide(client)
    assert set(body) >= {"vid", "token", "geo", "phrase", "source", "swaps", "experiments", "phone",
                         "rules_version", "degraded", "bot"}
    assert body["vid"] == VID
    assert body["phone"]["kind"] == "lease" and body["phone"]["pool"] == "saint-petersburg"
    assert body["degraded"] is False
    assert decide(client, ip="8.8.8.8")["phone"] is None  # no pool for this region
    assert body["rules_version"]
    assert response_is_json(client)


def response_is_json(client: TestClient) -> bool:
    response = client.get("/v1/decide", params={"site": "demo", "url": "/"})
    return response.headers["content-type"] == "application/json"


def test_geo_from_geolite2_in_site_language(client: TestClient) -> None:
    geo = decide(client, ip=SPB)["geo"]
    assert geo == {"country": "RU", "region": "RU-SPE", "city": "Санкт-Петербург",
                   "country_name": "Россия", "region_name": "Санкт-Петербург"}
    assert decide(client, ip=MOSCOW)["geo"]["region"] == "RU-MOW"


def test_keyword_and_city_personalise_the_headline(client: TestClient) -> None:
    body = decide(client, ip=SPB, url="http://127.0.0.1:8000/?utm_term=кондиционеры+купить+недорого")
    assert body["phrase"] == "кондиционеры купить недорого"
    assert swaps(body)["h1.hero"] == "Кондиционеры купить недорого в Санкт-Петербурге"
    assert swaps(body)[".hero-lead"] == "Привезём и установим в Санкт-Петербурге за один день"


def test_search_engine_referrer_gives_phrase_and_source(client: TestClient) -> None:
    body = decide(client, ip=MOSCOW, ref="https://yandex.ru/search/?text=ремонт+кондиционеров")
    assert body["phrase"] == "ремонт кондиционеров"
    assert body["source"]["engine"] == "yandex"
    assert body["source"]["medium"] == "organic"
    assert swaps(body)["h1.hero"] == "Ремонт кондиционеров в Москве за 24 часа"


def test_higher_priority_rule_wins_the_slot(client: TestClient) -> None:
    # Both hero-keyword-city (20) and hero-city (10) match; the keyword rule wins.
    body = decide(client, ip=MOSCOW, url="/?utm_term=кондиционер")
    assert swaps(body)["h1.hero"] == "Кондиционер в Москве"
    # Without a phrase only the country rule matches.
    assert swaps(decide(client, ip=MOSCOW))["h1.hero"] == "Кондиционеры с установкой в Москве"


def test_foreign_visitor_gets_no_russian_city_rule(client: TestClient) -> None:
    assert "h1.hero" not in swaps(decide(client, ip="8.8.8.8"))


def test_token_is_signed_and_carries_the_decision(client: TestClient) -> None:
    body = decide(client)
    payload = TokenSigner(SECRET.encode()).verify(body["token"])
    assert payload is not None
    assert payload["s"] == "demo" and payload["v"] == VID and payload["x"] == body["experiments"]
    assert TokenSigner(b"another-secret").verify(body["token"]) is None


def test_missing_or_malformed_vid_gets_a_fresh_one(client: TestClient) -> None:
    fresh = decide(client, vid="")["vid"]
    assert len(fresh) == 22
    other = decide(client, vid="bad id with spaces!")["vid"]
    assert other not in (fresh, "bad id with spaces!") and len(other) == 22


def test_exposure_recorded_once_per_visitor_and_experiment(client: TestClient, store: redis.Redis) -> None:
    variant = decide(client)["experiments"]["cta-wording"]
    for _ in range(3):
        assert decide(client)["experiments"]["cta-wording"] == variant
    assigned = store.hget("sw:{demo/cta-wording}:assign", VID).decode()
    assert assigned.startswith(f"{variant}|/|")
    assert sum(day_counts(store, "demo", "cta-wording", assigned[-10:]).values()) == 1  # "variant|page|day"


def test_a_returning_visitor_costs_the_store_no_exposure_scripts(client: TestClient, store: redis.Redis) -> None:
    decide(client, vid="returning-visitor-0001")
    assign = "sw:{demo/cta-wording}:assign"
    assert store.hexists(assign, "returning-visitor-0001")
    store.hdel(assign, "returning-visitor-0001")  # so that a second exposure script would show
    for _ in range(3):
        decide(client, vid="returning-visitor-0001")
    assert not store.hexists(assign, "returning-visitor-0001")  # the service knew it had recorded it


def test_bots_get_control_content_and_count_nowhere(client: TestClient, store: redis.Redis) -> None:
    response = client.get(
        "/v1/decide",
        params={"site": "demo", "url": "/?utm_term=кондиционер", "vid": VID},
        headers={"x-forwarded-for": SPB, "user-agent": YANDEXBOT},
    )
    body = response.json()
    assert body["bot"] is True
    assert body["swaps"] == [] and body["experiments"] == {} and body["phone"] is None
    assert sum(map(int, store.hvals("sw:{demo/_site}:bots"))) == 1  # counted apart...
    assert not store.exists("sw:{demo/_site}:assign", "sw:{demo/cta-wording}:assign")  # ...and exposed nowhere
    assert not store.exists("sw:{demo:saint-petersburg}:leases")  # no lease


def test_untrusted_peer_cannot_choose_its_ip(valkey_url: str, rules_dir: Any, store: redis.Redis) -> None:
    from service.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(valkey_url, rules_dir))
    with TestClient(app, client=("203.0.113.7", 1), headers=BROWSER_HEADERS) as untrusted:
        body = untrusted.get("/v1/decide", params={"site": "demo", "url": "/"},
                             headers={"x-forwarded-for": SPB}).json()
    assert body["geo"]["country"] is None  # 203.0.113.7 (TEST-NET) is nowhere; the header was ignored


def test_cors_allows_site_origins_only(client: TestClient) -> None:
    params = {"site": "demo", "url": "/"}
    allowed = client.get("/v1/decide", params=params, headers={"origin": "http://localhost:8000"})
    assert allowed.headers["access-control-allow-origin"] == "http://localhost:8000"
    foreign = client.get("/v1/decide", params=params, headers={"origin": "https://evil.example"})
    assert foreign.status_code == 403
    assert foreign.json()["error"]["code"] == "origin_not_allowed"
    assert "access-control-allow-origin" not in foreign.headers


@pytest.mark.parametrize(("params", "status", "code", "readable_by"), [
    ({"site": "demo", "url": "/?swapline_preview_city=Moskvaa"}, 400, "unknown_city", "http://localhost:8000"),
    ({"site": "demo", "url": "/", "vid": "v" * 200}, 400, "parameter_too_long", "http://localhost:8000"),
    ({"site": "nope", "url": "/"}, 404, "unknown_site", "*"),  # no site's origins to go by
])
def test_the_sites_own_pages_can_read_why_a_decision_was_refused(client: TestClient, params: dict[str, str],
                                                                 status: int, code: str, readable_by: str) -> None:
    """docs/RULES.md: a preview link's typo shows in the browser's network panel, not as a CORS error."""
    refused = client.get("/v1/decide", params=params, headers={"origin": "http://localhost:8000"})
    assert refused.status_code == status and refused.json()["error"]["code"] == code
    assert refused.headers["access-control-allow-origin"] == readable_by
    if readable_by != "*":
        assert refused.headers["vary"] == "Origin"
    foreign = client.get("/v1/decide", params=params, headers={"origin": "https://evil.example"})
    assert foreign.headers.get("access-control-allow-origin") == ("*" if readable_by == "*" else None)

@pytest.mark.parametrize(
    ("params", "headers", "status", "code"),
    [
        ({"url": "/"}, {}, 400, "missing_parameter"),
        ({"site": "demo"}, {}, 400, "missing_parameter"),
        ({"site": "nope", "url": "/"}, {}, 404, "unknown_site"),
        ({"site": "x" * 65, "url": "/"}, {}, 400, "parameter_too_long"),
        ({"site": "demo", "url": "javascript:alert(1)"}, {}, 400, "invalid_url"),
        ({"site": "demo", "url": "http://[::1/"}, {}, 400, "invalid_url"),
        ({"site": "demo", "url": "/", "vid": "v" * 200}, {}, 400, "parameter_too_long"),
        ({"site": "demo", "url": "/"}, {"x-forwarded-for": "not-an-ip"}, 400, "invalid_forwarded_for"),
        ({"site": "demo", "url": "/"}, {"x-forwarded-for": "1.2.3.4, 999.1.1.1"}, 400, "invalid_forwarded_for"),
        ({"site": "demo", "url": "/"}, {"x-forwarded-for": "1.2.3.4, unknown"}, 400, "invalid_forwarded_for"),
    ],
)
def test_bad_input_gets_a_clear_4xx(client: TestClient, params: dict[str, str], headers: dict[str, str],
                                    status: int, code: str) -> None:
    for _ in range(2):  # and again: pages are remembered, refusals are not
        response = client.get("/v1/decide", params=params, headers=headers)
        assert response.status_code == status
        assert response.json()["error"]["code"] == code
        assert response.json()["error"]["message"]


def test_unknown_route_and_method_are_json_errors(client: TestClient) -> None:
    assert client.get("/v1/nothing").json()["error"]["code"] == "not_found"
    response = client.post("/v1/decide")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz").json()
    assert ready["status"] == "ready" and ready["rules_version"]


def test_geoip_db_setting_switches_the_database(valkey_url: str, rules_dir: Any, store: redis.Redis,
                                                tiny_geoip: Any) -> None:
    from service.app import create_app
    from tests.conftest import make_settings

    app = create_app(make_settings(valkey_url, rules_dir, geoip_db=tiny_geoip))
    with TestClient(app, client=("127.0.0.1", 1), headers=BROWSER_HEADERS) as tiny:
        # As an address, and as a proxy on a dual-stack socket writes it: the database (an IPv4
        # one, as some vendors' are) has no IPv6 alias of its IPv4 addresses.
        bodies = [tiny.get("/v1/decide", params={"site": "demo", "url": "/?utm_term=кондиционер", "vid": f"geo-{n}"},
                           headers={"x-forwarded-for": address}).json()
                  for n, address in enumerate(("10.4.0.1", "::ffff:10.4.0.1"))]
    for body in bodies:
        assert body["geo"] == {"country": "RU", "region": "RU-ROS", "city": "Ростов-на-Дону",
                               "country_name": "Россия", "region_name": "Ростовская область"}
        assert swaps(body)["h1.hero"] == "Кондиционер в Ростове-на-Дону"


def test_a_decision_costs_one_store_round_trip(client: TestClient) -> None:
    batcher = client.app.state.runtime.store.batcher  # type: ignore[attr-defined]
    before = batcher.round_trips
    body = decide(client, ip=MOSCOW, vid="one-round-trip-000001")
    assert body["experiments"] and body["phone"]["kind"] == "lease"  # exposures and a lease...
    assert batcher.round_trips - before == 1  # ...in one pipeline


DEMO = "http://127.0.0.1:8000"


def journey(store: redis.Redis, vid: str, visit: str) -> dict[str, Any] | None:
    """The visit's record and pages as the store holds them, read through the service's own keys."""
    (_, record_key), (_, pages_key, *_) = visits.reads("demo", vid, visit)
    return visits.journey_of([store.get(record_key), store.lrange(pages_key, 0, -1)], 2**62)


@pytest.mark.parametrize(("again", "ip", "after"), [
    pytest.param(f"{DEMO}/?utm_source=google&utm_medium=cpc&gclid=g-1", MOSCOW, 60, id="a-new-ad-click"),
    pytest.param(f"{DEMO}/", MOSCOW, 31 * 60, id="back-after-the-visit-timeout"),
    pytest.param(f"{DEMO}/?utm_source=google&utm_medium=cpc", SPB, 60, id="a-new-visit-with-another-pool"),
])
def test_every_page_of_a_visit_and_a_returning_visitors_new_visit_cost_one_store_round_trip(
        client: TestClient, store: redis.Redis, clock: Clock, again: str, ip: str, after: int) -> None:
    """A decision's round trip carries its own commands (the lease or its renewal, new exposures)
    and, ahead of them, the writes nobody waits for (`Batcher.defer`): the page on the visit's
    journey and, when a visit starts, its record, its count in the reports' tables and the end
    of the last visit's hold in another pool. Counted as `Batcher.round_trips` counts batches
    sent, each decision costs one, and what it deferred is in the store when the page has its
    answer: nothing waits for the 0.25 s timer or for the next visitor's request."""
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.clock = clock  # the visit timeout and the holds run on the test's time
    batcher, vid = runtime.store.batcher, "returning-visitor-0002"

    def page(url: str, token: str, ref: str, address: str = MOSCOW) -> tuple[Any, int]:
        """The snippet's request for a page, sending the last token back; and its round trips."""
        before = batcher.round_trips
        body = decide(client, ip=address, url=url, vid=vid, visit=token, ref=ref)
        return body, batcher.round_trips - before

    landing, trips = page(f"{DEMO}/?utm_source=yandex&utm_medium=cpc&utm_term=кондиционер", "", "https://ya.ru/")
    assert trips == 1 and landing["visit"]["new"] and landing["experiments"]
    clock.advance(30)
    inner, trips = page(f"{DEMO}/contacts", landing["token"], f"{DEMO}/?utm_source=yandex")
    assert not inner["visit"]["new"] and inner["visit"]["id"] == landing["visit"]["id"]  # page 2, same visit...
    assert inner["phone"]["kind"] == "lease" and inner["phone"]["number"] == landing["phone"]["number"]
    assert trips == 1  # ...its lease's renewal and its deferred page on the journey in one round trip
    seen = journey(store, vid, inner["visit"]["id"])
    assert seen is not None and [p["path"] for p in seen["pages"]] == ["/", "/contacts"]

    clock.advance(after)
    back, trips = page(again, inner["token"], "", ip)
    assert back["visit"]["new"] and back["visit"]["id"] != landing["visit"]["id"]  # a new visit...
    assert back["experiments"] == landing["experiments"]  # ...of a visitor the worker has exposed before
    assert back["phone"]["kind"] == "lease"
    assert trips == 1  # its lease, with its record, journey, report count and the old hold's end
    started = journey(store, vid, back["visit"]["id"])
    assert started is not None and [p["path"] for p in started["pages"]] == ["/"]
    assert started["pool"] == back["phone"]["pool"]
    tables = counters.table_key("demo", runtime.today(runtime.site("demo")))
    assert store.strlen(tables) == 2 * counters.RECORD_BYTES  # both visits counted in the reports already
    assert (back["phone"]["pool"] != landing["phone"]["pool"]) is (ip != MOSCOW)
    if back["phone"]["pool"] != landing["phone"]["pool"]:  # one number at a time: the old hold has ended
        old = PoolKeys.of("demo", landing["phone"]["pool"])
        assert store.zscore(old.held, landing["phone"]["number"]) == runtime.now_ms()


def test_an_overflowed_visitors_decision_costs_one_round_trip_and_they_stay_out_of_the_call_rates(
        pool_client: TestClient) -> None:
    """The pool is full: the visitor gets the overflow number in one round trip, and the mark
    that keeps them out of the rates a call counts in rides ahead of their first beacon."""
    batcher = pool_client.app.state.runtime.store.batcher  # type: ignore[attr-defined]
    url = "http://localhost:8000/"
    for n in range(3):  # the pool's three numbers
        assert decide(pool_client, url=url, site="pooltest", vid=f"holder-visitor-{n:07d}")["phone"]["kind"] == "lease"
    before = batcher.round_trips
    late = decide(pool_client, url=url, site="pooltest", vid="overflowed-visitor-001")
    assert late["phone"]["kind"] == "overflow" and batcher.round_trips - before == 1
    beacon = orjson.dumps({"type": "form", "id": "overflow-form", "token": late["token"]})
    form = pool_client.post("/v1/events", content=beacon, headers={"content-type": "text/plain"})
    assert form.status_code == 202 and form.json()["outcome"] == "counted"  # in the form rates, as anyone's
    report = pool_client.get("/v1/reports/pooltest", headers={"authorization": "Bearer test-report-token-0001"}).json()
    assert report["excluded"]["overflowed_visitors"] == 1 and report["excluded"]["overflowed_conversions"] == 1
    rows = [row for table in report["experiments"] for row in table["variants"]]
    assert sum(row["converted"]["any"] for row in rows) == 0 and sum(row["converted"]["form"] for row in rows) == 1


def test_a_page_with_an_address_past_the_bound_is_answered_its_start_read(client: TestClient) -> None:
    """A search phrase of 500 words makes the page's address 28 KB as sent: the visitor still gets
    the page's texts and number, from what the address starts with; its referrer likewise."""
    page = "http://127.0.0.1:8000/?utm_source=yandex&utm_term=" + quote("купить кондиционер " * 250)
    body = decide(client, url=page, ref="https://yandex.ru/search/?text=" + "a" * 5000, ip="46.242.0.1")
    assert swaps(body)["h1.hero"].endswith("в Москве") and body["phone"]["kind"] == "lease"
    assert body["source"]["source"] == "yandex" and body["phrase"].startswith("купить кондиционер")
    assert decide(client, url="/" + "a" * 5000)["token"]  # a path past the bound: a page view all the same
    for pad in range(6):  # the cut falls at each place of a letter's two escapes («к» is %D0%BA)
        body = decide(client, url=f"{page}&x={'x' * pad}".replace("utm_source", f"p={'p' * pad}&utm_source"))
        assert body["phrase"].startswith("купить кондиционер") and body["phrase"].isascii() is False, pad
        assert set(body["phrase"]) <= set("купить кондиционер "), pad  # no letter read in another encoding


def test_a_preview_link_fakes_the_city_and_records_nothing(client: TestClient, store: redis.Redis) -> None:
    """`?swapline_preview_city=` on the page: what a visitor there sees, from anywhere; the
    number is the pool's first, held by nobody, and the store learns nothing of the view."""
    page = "http://127.0.0.1:8000/?utm_term=купить+кондиционер&swapline_preview_city=Москва"
    keys = set(store.scan_iter("*"))
    body = decide(client, ip="8.8.8.8", url=page)  # an address GeoIP places in the USA
    assert body["preview"] is True and body["geo"]["region"] == "RU-MOW" and body["geo"]["city"] == "Москва"
    assert swaps(body)["h1.hero"] == "Купить кондиционер в Москве"
    assert body["phone"]["kind"] == "preview" and body["phone"]["international"] == "+7 495 120-00-01"
    assert set(store.scan_iter("*")) == keys  # no lease, no exposure, no visit, no page view
    kazan = decide(client, url="http://127.0.0.1:8000/?swapline_preview_city=kazan")  # any case, English too
    assert swaps(kazan)["h1.hero"] == "Кондиционеры с установкой в Казани" and kazan["phone"] is None


@pytest.mark.parametrize(("city", "code"), [("Атлантида", "unknown_city"), ("-", "unknown_city"),
                                          ("Я" * 101, "parameter_too_long")])
def test_a_preview_of_a_city_nobody_knows_is_refused_with_its_reason(client: TestClient, city: str,
                                                                      code: str) -> None:
    response = client.get("/v1/decide", params={"site": "demo", "url": f"/?swapline_preview_city={city}"})
    assert response.status_code == 400 and response.json()["error"]["code"] == code


@pytest.mark.parametrize(("pinned", "code", "named"), [
    ("cta-wording:nonexistent", "unknown_variant", "control, install-tomorrow, free-visit"),
    ("cta-wordng:free-visit", "unknown_experiment", "cta-wording"),
])
def test_a_preview_of_a_variant_the_site_lacks_is_refused_naming_what_it_has(client: TestClient, pinned: str,
                                                                            code: str, named: str) -> None:
    """Else it said `"preview": true` and showed the visitor's own variant, as if pinned."""
    for params in ({"url": f"/?swapline_preview={pinned}"}, {"url": "/", "preview": pinned}):
        response = client.get("/v1/decide", params={"site": "demo", **params})
        assert response.status_code == 400 and response.json()["error"]["code"] == code
        assert named in response.json()["error"]["message"]
    shown = decide(client, url="/?swapline_preview=cta-wording:free-visit")
    assert shown["preview"] is True and swaps(shown)["#cta"] == "Бесплатный выезд мастера"


def test_a_preview_of_an_experiment_on_another_page_says_where_it_runs(client: TestClient) -> None:
    """Else it answered `"experiments": {}` and the marketer saw the page unchanged, with no hint why."""
    pinned = "/contacts?swapline_preview=cta-wording:free-visit"
    response = client.get("/v1/decide", params={"site": "demo", "url": pinned})
    assert response.status_code == 400 and response.json()["error"]["code"] == "not_on_this_page"
    assert "runs on /, /demo, not on /contacts" in response.json()["error"]["message"]

IMAGES = """
site: images
rules:
  - id: everyone
    swap:
      - {selector: img.hero, src: /img/spb.jpg, srcset: "/img/spb.jpg 1x, /img/spb@2x.jpg 2x"}
      - {selector: a.cta, href: "/contacts?from={{ phrase|urlencode }}", text: Звоните}
      - {selector: .promo, show: false}
      - {selector: .search, href: "{{ phrase }}"}
"""


def test_images_links_and_visibility_go_to_the_snippet_as_it_applies_them(valkey_url: str, rules_dir: Any,
                                                                         clock: Clock) -> None:
    with site_client(valkey_url, rules_dir, clock, "images", IMAGES) as client:
        body = decide(client, site="images", url="https://shop.example/catalog/?utm_term=сплит+javascript:x")
        assert body["swaps"] == [  # addresses made absolute, as the browser reads `src` and `href` back
            {"selector": "img.hero", "property": "src", "value": "https://shop.example/img/spb.jpg"},
            {"selector": "img.hero", "property": "srcset", "value": "/img/spb.jpg 1x, /img/spb@2x.jpg 2x"},
            {"selector": "a.cta", "text": "Звоните", "property": "textContent", "value": "Звоните"},
            {"selector": "a.cta", "property": "href",
             "value": "https://shop.example/contacts?from=%D1%81%D0%BF%D0%BB%D0%B8%D1%82%20javascript%3Ax"},
            {"selector": ".promo", "property": "hidden", "value": True},
            {"selector": ".search", "property": "href",  # a relative path, harmless
             "value": "https://shop.example/catalog/сплит javascript:x"},
        ]
        body = decide(client, site="images", url="https://shop.example/?utm_term=javascript:alert(1)")
    assert {swap["selector"] for swap in body["swaps"] if swap["property"] == "href"} == {"a.cta"}
