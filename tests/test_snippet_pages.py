"""The snippet on pages that fight it or hide from it (issue 16), in headless Chromium against
the real service: text a page writes back, shadow roots, a replaced <body>, a strict CSP and
the README's anti-flicker lines, a page that has its own `swapline`, and conversions that
happen before the decision arrives."""

from __future__ import annotations

import base64
import hashlib
from typing import Any
from urllib.parse import quote

import pytest
import redis
from playwright.sync_api import Page

from tests.test_snippet import (
    ANTI_FLICKER,
    ANTI_FLICKER_HASH,
    COUNT_VISITS,
    Fixtures,
    Held,
    browser,
    decided,
    fixtures,
    forms,
    outbox,
    page,
    pause_clock,
    service,
    text,
    url,
)

__all__ = ["browser", "fixtures", "page", "service"]  # the fixtures of tests/test_snippet.py, shared

PRINTED = "+7 (812) 645-17-14"  # the fixture site's own number, as its pages print it


def printed(digits: str) -> str:
    """The leased number in the fixture pages' format."""
    return f"+7 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}"


def console_errors(page: Page) -> list[str]:
    """What the page logs as errors from now on (a refused style or script shows here)."""
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    return errors


# A page that puts its own texts back whenever they change, a task later, as a framework's
# scheduler would; it checks again a task after each time. The snippet answers a change in the
# microtasks of the task that made it, so a check that finds nothing changed means the fight
# is over (or went on for 50 rounds). Resolves with how often the page had to put its texts
# back, and the texts then.
FIGHT = """() => new Promise((resolve) => {
    const box = document.createElement('div');
    box.innerHTML = '<h1 class="hero">The page\\'s headline</h1><p>+7 (812) 645-17-14</p>';
    const own = [...box.children].map((el) => el.textContent);
    let rounds = 0;
    const check = () => {
        const changed = [...box.children].filter((el, i) => el.textContent !== own[i]);
        if (!changed.length || rounds == 50) return resolve([rounds, [...box.children].map((el) => el.textContent)]);
        rounds++;
        [...box.children].forEach((el, i) => (el.textContent = own[i]));
        setTimeout(check);
    };
    document.body.appendChild(box);
    setTimeout(check);
})"""


def test_a_page_that_writes_its_text_back_wins_after_a_few_rounds(page: Page, fixtures: Fixtures) -> None:
    page.goto(url(fixtures))
    decided(page)
    rounds, texts = page.evaluate(FIGHT)
    assert 1 <= rounds <= 9  # the snippet swapped, then gave in: no endless fight
    assert texts == ["The page's headline", PRINTED] and page.errors == []  # type: ignore[attr-defined]


def test_what_the_snippet_writes_is_not_read_again(page: Page, fixtures: Fixtures) -> None:
    page.add_init_script(f"({COUNT_VISITS})()")
    page.goto(url(fixtures))
    digits = decided(page)["phone"]["digits"]
    page.evaluate("document.body.appendChild(document.createElement('ul'))")
    walked = page.evaluate("""async (printed) => {
        const list = document.querySelector('body > ul:last-child'), before = window.visited;
        for (let i = 0; i < 50; i++) list.appendChild(document.createElement('li')).textContent = 'Звоните ' + printed;
        await new Promise((resolve) => setTimeout(resolve));  // the observer's records, delivered
        return [window.visited - before, list.lastChild.textContent];
    }""", PRINTED)
    # Each item's text, once: the 50 numbers rewritten are not 50 more records to read.
    assert walked == [50, "Звоните " + printed(digits)]


def test_shadow_roots_old_and_new_are_swapped_closed_ones_left_alone(page: Page, fixtures: Fixtures) -> None:
    decide = Held(page, "**/v1/decide?**")
    page.goto(url(fixtures, page="components.html"))  # load: its declarative shadow root is there
    page.wait_for_function("typeof swapline === 'object'")
    decide[0].fallback()
    digits = decided(page)["phone"]["digits"]
    card = "(part) => document.getElementById('card').shadowRoot.querySelector(part).textContent"
    assert page.evaluate(card, "h1") == "Кондиционеры" and page.evaluate(card, "b") == printed(digits)
    assert text(page, "#f1") == printed(digits)
    # A component defined now: the elements upgrade and attach their shadow roots, which render later.
    rendered = page.evaluate("""async (printed) => {
        customElements.define('call-card', class extends HTMLElement {
            connectedCallback() {
                const root = this.attachShadow({mode: this.dataset.mode || 'open'});
                setTimeout(() => (root.innerHTML = '<h1 class="hero">Card</h1><span>' + printed + '</span>'));
                this.rendered = root;
            }
        });
        await new Promise((resolve) => setTimeout(resolve));
        await new Promise((resolve) => setTimeout(resolve));  // rendered, and the observer has had its turn
        return ['open-card', 'closed-card'].map((id) => document.getElementById(id).rendered.textContent);
    }""", PRINTED)
    assert rendered == ["Кондиционеры" + printed(digits), "Card" + PRINTED]


def test_a_widgets_form_and_tel_link_in_a_shadow_root_are_conversions(page: Page, fixtures: Fixtures) -> None:
    """A callback widget built as a web component: its submit event never leaves its shadow
    root, and a click leaves it as the host's. Both count, in a root on the page from the start
    and in one a component attaches after the answer, whose tel: link is renumbered too."""
    pause_clock(page)  # no heartbeat among the events
    page.goto(url(fixtures, page="components.html"))
    digits = decided(page)["phone"]["digits"]
    with page.expect_response("**/v1/events") as form:
        page.locator("#card form button").click()
    page.evaluate("""() => {
        customElements.define('callback-widget', class extends HTMLElement {
            connectedCallback() {
                this.attachShadow({mode: 'open'}).innerHTML = '<a href="tel:+78126451714">+7 (812) 645-17-14</a>';
            }
        });
        document.body.appendChild(document.createElement('callback-widget'));
    }""")
    link = page.locator("callback-widget a")
    with page.expect_response("**/v1/events") as tap:
        link.evaluate("(a) => a.dispatchEvent(new MouseEvent('click', {bubbles: true, composed: true}))")
    assert [answer.value.json() for answer in (form, tap)] == [
        {"accepted": "form", "outcome": "counted"}, {"accepted": "tel_click", "outcome": "counted"}]
    assert link.get_attribute("href") == "tel:+7" + digits and link.text_content() == printed(digits)


def test_a_replaced_body_is_still_swapped(page: Page, fixtures: Fixtures) -> None:
    page.goto(url(fixtures))
    digits = decided(page)["phone"]["digits"]
    swapped = page.evaluate("""async (printed) => {  // as Turbo and pjax go to the next page
        const body = document.createElement('body');
        body.innerHTML = '<h1 class="hero">Next page</h1><p>' + printed + '</p>';
        document.body = body;
        await new Promise((resolve) => setTimeout(resolve));
        const later = document.body.appendChild(document.createElement('p'));  // and what it adds after
        later.textContent = printed;
        await new Promise((resolve) => setTimeout(resolve));
        return [...document.body.children].map((el) => el.textContent);
    }""", PRINTED)
    assert swapped == ["Кондиционеры", printed(digits), printed(digits)]


VISIBILITY = "(s) => getComputedStyle(document.querySelector(s)).visibility"


def test_hiding_works_under_a_strict_csp_and_logs_no_error(page: Page, fixtures: Fixtures) -> None:
    errors = console_errors(page)
    pause_clock(page)  # the snippet's time-out never runs out on a busy machine
    decide = Held(page, "**/v1/decide?**")
    page.goto(url(fixtures, page="csp.html"))
    page.wait_for_function("typeof swapline === 'object'")
    assert page.evaluate(VISIBILITY, "#hero") == "hidden" and page.evaluate(VISIBILITY, "#lead") == "visible"
    decide[0].fallback()
    digits = decided(page)["phone"]["digits"]
    assert page.evaluate(VISIBILITY, "#hero") == "visible" and text(page, "#hero") == "Кондиционеры"
    assert text(page, "#f1") == printed(digits)
    assert errors == [] and page.errors == []  # type: ignore[attr-defined]


def test_the_readme_anti_flicker_lines_hide_until_the_snippet_or_their_time_out(page: Page,
                                                                                 fixtures: Fixtures) -> None:
    assert "sha256-" + base64.b64encode(hashlib.sha256(ANTI_FLICKER.encode()).digest()).decode() == ANTI_FLICKER_HASH
    errors = console_errors(page)
    pause_clock(page)
    snippet = Held(page, "**/s.js", times=1)  # the snippet is slow to come, or never comes
    page.goto(url(fixtures, "?antiflicker&timeout=1500", page="csp.html"), wait_until="domcontentloaded")
    assert snippet[0] and page.evaluate("typeof swapline") == "undefined"  # hidden before the snippet runs
    assert page.evaluate(VISIBILITY, "#hero") == "hidden" and page.evaluate(VISIBILITY, "#lead") == "visible"
    page.clock.run_for(1499)
    assert page.evaluate(VISIBILITY, "#hero") == "hidden"
    page.clock.run_for(1)  # the page's data-timeout: shown as it is, snippet or not
    assert page.evaluate(VISIBILITY, "#hero") == "visible" and text(page, "#hero") == "Original headline"

    # The next page: the snippet comes, and its answer shows the elements.
    decide = Held(page, "**/v1/decide?**")
    page.goto(url(fixtures, "?antiflicker", page="csp.html"))
    page.wait_for_function("typeof swapline === 'object'")
    assert page.evaluate(VISIBILITY, "#hero") == "hidden"
    decide[0].fallback()
    decided(page)
    assert page.evaluate(VISIBILITY, "#hero") == "visible" and text(page, "#hero") == "Кондиционеры"
    assert errors == [] and page.errors == []  # type: ignore[attr-defined]


def test_a_page_that_has_its_own_swapline_keeps_it_and_is_swapped_all_the_same(page: Page,
                                                                               fixtures: Fixtures) -> None:
    page.goto(url(fixtures, "?clash"))
    page.wait_for_function("document.getElementById('hero').textContent === 'Кондиционеры'")
    assert page.evaluate("swapline.textContent") == "a page's own"  # still the page's element

    page.goto(url(fixtures, "?clash&name=acme"))  # the page names the API itself (README, data-name)
    answer = page.evaluate("new Promise((resolve) => acme.ready(resolve))")
    assert answer["vid"] and page.evaluate("swapline.textContent") == "a page's own"


@pytest.mark.parametrize(("query", "copy_name"), [
    ("", ""),
    ("", "swl2"),  # the copy under a name of its own
    ("?clash", ""),  # an element with the id "swapline": window.swapline is no API of ours
])
def test_a_page_that_loads_the_snippet_twice_runs_it_once(page: Page, fixtures: Fixtures, service: str, query: str,
                                                          copy_name: str) -> None:
    """Two tags (a tag manager's copy beside the page's own): one decision, each form counted once."""
    before = forms(service)
    pause_clock(page)  # no heartbeat among the events
    decisions: list[str] = []
    page.on("request", lambda request: "/v1/decide?" in request.url and decisions.append(request.url))
    page.goto(url(fixtures, query))
    page.wait_for_function("document.getElementById('hero').textContent === 'Кондиционеры'")  # decided
    page.evaluate("""(name) => new Promise((loaded) => {
        const copy = document.createElement('script');
        copy.src = document.querySelector('script[data-site]').src;
        copy.dataset.site = 'fixture';
        if (name) copy.dataset.name = name;
        copy.onload = loaded;
        document.head.appendChild(copy);
    })""", copy_name)
    with page.expect_response("**/v1/events") as answer:
        page.click("#submit")
    assert answer.value.json()["outcome"] == "counted"
    page.wait_for_function("localStorage.swl_out === '[]'")
    assert len(decisions) == 1 and forms(service) - before == 1


def test_a_conversion_before_the_decision_is_sent_once_it_arrives(page: Page, fixtures: Fixtures,
                                                                  service: str) -> None:
    before = forms(service)
    pause_clock(page)  # no heartbeat among the events
    decide = Held(page, "**/v1/decide?**")
    sent: list[Any] = []
    page.on("request", lambda request: request.url.endswith("/v1/events") and sent.append(request.post_data_json))
    page.goto(url(fixtures))
    page.click("#submit")  # the decision is slow: the visitor is quicker
    page.evaluate("swapline.goal('callback')")
    waiting = outbox(page)
    assert [event["type"] for event in waiting] == ["form", "goal"] and sent == []
    assert not any("token" in event for event in waiting)  # nothing to send them with yet
    with page.expect_response("**/v1/events") as first, page.expect_response("**/v1/events") as second:
        decide[0].fallback()
    assert sorted(answer.value.json()["outcome"] for answer in (first, second)) == ["counted", "counted"]
    assert sorted(event["id"] for event in sent) == sorted(event["id"] for event in waiting)
    page.wait_for_function("localStorage.swl_out === '[]'")
    assert forms(service) - before == 1


def test_a_conversion_before_the_decision_on_a_page_left_is_sent_from_the_next(page: Page, fixtures: Fixtures,
                                                                             service: str) -> None:
    before = forms(service)
    pause_clock(page)
    decide = Held(page, "**/v1/decide?**", times=1)  # this page's decision only
    page.goto(url(fixtures))
    page.click("#submit")
    (waiting,) = outbox(page)
    assert decide[0]  # the visitor leaves before the decision came
    with page.expect_response("**/v1/events") as delivered:
        page.goto(url(fixtures, "?next"))
    assert delivered.value.request.post_data_json["id"] == waiting["id"]
    assert delivered.value.json()["outcome"] == "counted"
    page.wait_for_function("localStorage.swl_out === '[]'")
    page.reload()
    decided(page)
    assert forms(service) - before == 1 and outbox(page) == []  # once


def test_images_links_and_visibility_swap_and_a_phrase_never_makes_a_script_link(page: Page, fixtures: Fixtures,
                                                                               service: str) -> None:
    origin = f"http://127.0.0.1:{fixtures.server_port}"
    page.goto(f"{origin}/media.html?utm_term=" + quote("сплит система"))
    decided(page)
    image = page.evaluate("(image) => [image.src, image.getAttribute('srcset')]", page.query_selector("#hero-image"))
    assert image == [f"{origin}/img/all.jpg", "/img/all.jpg 1x, /img/all@2x.jpg 2x"]
    assert page.get_attribute("#cta", "href") == f"{origin}/catalog?q=%D1%81%D0%BF%D0%BB%D0%B8%D1%82%20" \
                                                 "%D1%81%D0%B8%D1%81%D1%82%D0%B5%D0%BC%D0%B0"
    assert not page.is_visible("#moscow-only") and page.is_visible("#promo")
    rewritten = page.evaluate("""() => {  // the same values again: nothing to write
        const seen = new MutationObserver(() => {});
        seen.observe(document.getElementById('hero-image'), {attributes: true});
        for (let n = 0; n < 10; n++) swapline.swap();
        return seen.takeRecords().length;
    }""")
    assert rewritten == 0

    page.goto(f"{origin}/media.html?utm_term=" + quote("javascript:alert(1)"))
    decided(page)
    assert page.get_attribute("#search", "href") == "/search"  # the page's own
    assert page.get_attribute("#cta", "href") == f"{origin}/catalog?q=javascript%3Aalert%281%29"


def test_a_preview_link_shows_a_citys_image_and_records_nothing(page: Page, fixtures: Fixtures, service: str,
                                                                valkey_url: str) -> None:
    page.goto(f"http://127.0.0.1:{fixtures.server_port}/media.html?swapline_preview_city=" + quote("Казань"))
    decision = decided(page)
    assert decision["preview"] is True and decision["geo"]["city"] == "Казань"
    assert page.get_attribute("#hero-image", "src").endswith("/img/kazan.jpg")
    assert decision["phone"]["kind"] == "preview"  # the pool's first number, held by nobody
    assert not list(redis.Redis.from_url(valkey_url).scan_iter(f"*{decision['vid']}*"))  # no visit, no page view
