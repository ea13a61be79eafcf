"""Locust suite: browsers running the Swapline snippet, and a telephony system posting calls.

    locust -f loadtest/locustfile.py --headless -u 50 -r 10 -t 30s --host http://127.0.0.1:8000

The service must serve `loadtest/rules` (the `load` site) and trust this machine as a proxy,
because every simulated visitor's address arrives in `X-Forwarded-For`:

    SWAPLINE_RULES_DIR=loadtest/rules SWAPLINE_TRUSTED_PROXIES=127.0.0.1/32 \\
    SWAPLINE_DECISION_RATE=1000000 SWAPLINE_BEACON_RATE=1000000 swapline serve

One Locust user is one browser tab that visits the site again and again. A visit:

1. a new visitor (a fresh snippet-made id, or none, so the service makes one) or a returning
   one (an earlier visitor's id, address and browser, kept in this process);
2. a landing page with the campaign's `utm_*` parameters or a Yandex/Google search referrer
   (see `traffic.py` for the mix), then 0–4 internal pages, each a `GET /v1/decide`; as the
   snippet does, each page after the first sends the last decision's token (`visit=`), so
   the service continues the visit;
3. on every page with a leased number, a heartbeat after the visitor has read a while;
4. sometimes a form, a `tel:` click or a goal beacon with the decision token;
5. sometimes a phone call to the leased number: the telephony system's signed
   `POST /v1/calls`, which must credit the call to this very visitor; now and then the
   telephony system retries it, which must answer `duplicate`.

Any 4xx/5xx is a failure, and so is a 2xx whose content is wrong (a missing token, a number
from the wrong pool, a degraded decision, a call credited to someone else, a visitor shown
another number while they hold one, a number shown to a visitor while another holds it: this
process's visitors, see `Holders`). A decision that
gave the pool's overflow number is counted as `/v1/decide overflow`; the run fails (exit code
1) when more than LOADTEST_MAX_OVERFLOW of its decisions overflowed, or when it sent none.

Environment: LOADTEST_THINK scales the think times (default 1; the CI smoke uses 0.2);
LOADTEST_MAX_OVERFLOW is the share of decisions that may overflow (default 0.01);
LOADTEST_SITE, LOADTEST_ORIGIN and LOADTEST_CALLS_SECRET point the suite at another site.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import time
import uuid
from typing import Any

import gevent
from locust import FastHttpUser, between, events, task
from locust.env import Environment
from locust.runners import WorkerRunner
from traffic import (
    CALLS_SECRET,
    EXPECTED_POOL,
    ORIGIN,
    SITE,
    Client,
    PageView,
    Traffic,
    decide_path,
    event_body,
    signed_call,
)

THINK = float(os.environ.get("LOADTEST_THINK", "1"))
MAX_OVERFLOW = float(os.environ.get("LOADTEST_MAX_OVERFLOW", "0.01"))
SITE_KEY = os.environ.get("LOADTEST_SITE", SITE)
SITE_ORIGIN = os.environ.get("LOADTEST_ORIGIN", ORIGIN)
SECRET = os.environ.get("LOADTEST_CALLS_SECRET", CALLS_SECRET)

RETURNING_SHARE = 0.35  # visits by someone who has been here before
FORM_SHARE = 0.06  # visits that send a form
TEL_CLICK_SHARE = 0.08  # visits that tap a tel: link
GOAL_SHARE = 0.05  # visits that reach a custom goal
CALL_SHARE = 0.12  # visits with a leased number that call it
CALL_RETRY_SHARE = 0.05  # calls the telephony system posts twice
# A conversion beacon's outcomes (service/front/events.py); `spooled`: kept on disk while the
# store is away and counted when it is back (docs/DEPLOY.md, "Store outages"), no failure.
OUTCOMES = {"counted", "duplicate", "excluded", "unexposed", "spooled"}
DECIDE, OVERFLOW = "/v1/decide", "/v1/decide overflow"  # the decisions' rows in Locust's stats
SKEW = 2.0  # seconds the service's clock may be ahead of this machine's: a hold is taken to end that much early

traffic = Traffic(origin=SITE_ORIGIN)
# Visitors seen by this Locust process, for returning visits: (vid, client).
visitors: collections.deque[tuple[str, Client]] = collections.deque(maxlen=20_000)


def think(low: float, high: float) -> None:
    gevent.sleep(traffic.rng.uniform(low, high) * THINK)


class Holders:
    """The leased numbers this process's visitors were shown, and until when each is surely
    still held: a hold lasts at least its length from the start of the request that last
    renewed it (a decision or a heartbeat). The service promises that a visitor keeps their
    number while the hold lives, and that nobody else is shown it meanwhile. With one Locust
    process that is checked for every visitor; with several (`--processes`), each sees only its
    own visitors, so a number shown to visitors of two processes goes unnoticed."""

    def __init__(self) -> None:
        self.numbers: dict[str, tuple[str, float]] = {}  # number → its visitor, and until when it is surely held
        self.held: dict[str, str] = {}  # visitor → their number (bounded by the pools' numbers, as `numbers`)

    def holder(self, number: str, now: float) -> str | None:
        vid, until = self.numbers.get(number, ("", 0.0))
        return vid if now + SKEW < until else None

    def shown(self, vid: str, number: str | None, now: float) -> str | None:
        """What is wrong with showing `vid` the leased `number` (None: no number, or the pool's
        overflow number) in an answer that came at `now`. The failure's message is the same for
        every visitor, so Locust's error report counts them; the log says who and which."""
        kept = self.held.get(vid)
        if kept and number != kept and self.holder(kept, now) == vid:
            logging.warning("visitor %s was shown %s while they hold %s", vid, number or "no leased number", kept)
            return "a visitor was shown another number while they hold one"
        holder = self.holder(number, now) if number else None
        if holder and holder != vid:
            logging.warning("%s was shown to visitor %s while visitor %s holds it", number, vid, holder)
            return "a number was shown to a visitor while another holds it"
        return None

    def renewed(self, vid: str, number: str, until: float) -> None:
        """`vid` holds `number` until `until` at least."""
        last, before = self.numbers.get(number, (vid, until))
        if last != vid and self.held.get(last) == number:
            del self.held[last]  # their hold has ended: the number is someone else's now
        self.numbers[number] = (vid, max(until, before) if last == vid else until)
        self.held[vid] = number


holders = Holders()


class Browser(FastHttpUser):
    """A browser tab with the snippet, visiting the site again and again."""

    wait_time = between(1 * THINK, 5 * THINK)  # between two visits

    @task
    def visit(self) -> None:
        returning = bool(visitors) and traffic.rng.random() < RETURNING_SHARE
        if returning:
            vid, client = traffic.rng.choice(visitors)
            sent: str | None = vid
        else:
            client = traffic.client()
            sent = traffic.vid() if traffic.rng.random() < 0.8 else None  # or the cookie was blocked
        headers = {"X-Forwarded-For": client.ip, "User-Agent": client.user_agent, "Origin": SITE_ORIGIN,
                   "Sec-Fetch-Mode": "cors"}  # as a browser's fetch from the site's page
        view = traffic.landing()
        # The token carries the visit from page to page. A returning visitor comes back later than
        # the visit timeout would allow in a run, so their last visit's token is not sent: the
        # service starts a new visit, as it would after the timeout.
        number = token = None
        for page in range(1 if client.bot else traffic.pages_per_visit()):
            if page:
                view = traffic.next_page(view)
            answer = self.decide(view, sent, token, client, headers)
            if answer is None:
                return
            sent, token = answer["vid"], answer["token"]
            phone = answer["phone"] or {}
            number = phone.get("number") if phone.get("kind") == "lease" else None
            if client.bot:
                return  # crawlers run no beacons
            think(2, 8)  # reading the page
            if number:
                self.heartbeat(token, sent, number, phone["hold"], headers)
        if not returning and sent:
            visitors.append((sent, client))
        if token is None:
            return
        roll = traffic.rng.random()
        if roll < FORM_SHARE:
            self.convert("form", token, headers)
        elif roll < FORM_SHARE + TEL_CLICK_SHARE:
            self.convert("tel_click", token, headers)
        elif roll < FORM_SHARE + TEL_CLICK_SHARE + GOAL_SHARE:
            self.convert("goal", token, headers, name=traffic.rng.choice(("cart", "calculator", "chat")))
        if number and sent and traffic.rng.random() < CALL_SHARE:
            self.call(number, sent)

    def decide(self, view: PageView, vid: str | None, visit: str | None, client: Client,
               headers: dict[str, str]) -> Any:
        asked = time.time()
        with self.client.get(decide_path(view, vid, SITE_KEY, visit), headers=headers, name=DECIDE,
                             catch_response=True) as response:
            if response.status_code != 200:
                response.failure(f"HTTP {response.status_code}: {_text(response)}")
                return None
            try:
                answer = response.json()
            except ValueError:
                response.failure("the decision is not JSON")
                return None
            if (answer.get("phone") or {}).get("kind") == "overflow":  # the pool had no number for this visitor
                response.request_meta["name"] = OVERFLOW
            problem = _wrong_decision(answer, vid, client) or _wrong_number(answer, asked)
            if problem:
                response.failure(problem)
                return None
            response.success()
            return answer

    def heartbeat(self, token: str, vid: str, number: str, hold: int, headers: dict[str, str]) -> None:
        asked = time.time()
        with self.client.post("/v1/events", data=event_body("heartbeat", token), name="/v1/events heartbeat",
                              headers={**headers, "Content-Type": "text/plain;charset=UTF-8"},
                              catch_response=True) as response:
            if response.status_code == 205:
                response.failure(f"the visitor no longer holds {number}, within its hold")
            elif response.status_code != 202:
                response.failure(f"HTTP {response.status_code}: {_text(response)}")
            elif response.json().get("number") != number:
                response.failure(f"the heartbeat kept {response.json().get('number')}, not the leased {number}")
            else:
                holders.renewed(vid, number, asked + hold)
                response.success()

    def convert(self, kind: str, token: str, headers: dict[str, str], name: str | None = None) -> None:
        body = event_body(kind, token, f"{kind}-{uuid.uuid4().hex}", name)
        with self.client.post("/v1/events", data=body, name=f"/v1/events {kind}",
                              headers={**headers, "Content-Type": "text/plain;charset=UTF-8"},
                              catch_response=True) as response:
            if response.status_code != 202:
                response.failure(f"HTTP {response.status_code}: {_text(response)}")
            elif response.json().get("outcome") not in OUTCOMES:
                response.failure(f"unexpected outcome {response.json().get('outcome')!r}")
            else:
                if response.json()["outcome"] == "spooled":
                    response.request_meta["name"] += " spooled"  # a row of its own: the store was away
                response.success()

    def call(self, number: str, vid: str) -> None:
        """The visitor dials the number now; the telephony system posts the finished call."""
        start = time.time()
        think(1, 3)  # the call's webhook comes after the call
        caller = f"+7916{traffic.rng.randrange(10**7):07d}"
        body, signature = signed_call(number, f"lt-{uuid.uuid4().hex}", start, traffic.rng.choice((0, 12, 45, 180)),
                                      caller, SECRET)
        headers = {"X-Swapline-Signature": signature, "Content-Type": "application/json"}
        attempts = 2 if traffic.rng.random() < CALL_RETRY_SHARE else 1
        spooled = False
        for attempt in range(attempts):
            with self.client.post(f"/v1/calls?site={SITE_KEY}", data=body, headers=headers, name="/v1/calls",
                                  catch_response=True) as response:
                if response.status_code == 202 and response.json().get("spooled"):
                    # Kept on disk while the store is away, credited when it is back (docs/CALLS.md).
                    response.request_meta["name"] = "/v1/calls spooled"
                    response.success()
                    spooled = True
                    continue
                if response.status_code != 200:
                    response.failure(f"HTTP {response.status_code}: {_text(response)}")
                    return
                answer = response.json()
                if not answer.get("credited") or answer.get("visitor") != vid:
                    response.failure(f"call to {number} credited to {answer.get('visitor')!r} "
                                     f"({answer.get('reason')}), not to its holder {vid}")
                # A spooled post's retry may come before its replay (no duplicate then) or after it.
                elif answer.get("duplicate") != bool(attempt) and not spooled:
                    response.failure(f"duplicate={answer.get('duplicate')} on attempt {attempt + 1}")
                else:
                    response.success()


@events.quitting.add_listener
def verdict(environment: Environment, **_: Any) -> None:
    """Fail a run that sent no decisions (`-u 0`), and one where more than LOADTEST_MAX_OVERFLOW
    of the decisions gave the overflow number: none of its requests failed, but its figures
    are not those of a service leasing numbers."""
    if isinstance(environment.runner, WorkerRunner):
        return  # the master judges the run, on every worker's figures

    def sent(name: str) -> int:
        entry = environment.stats.entries.get((name, "GET"))
        return entry.num_requests if entry else 0

    overflowed = sent(OVERFLOW)
    decided = sent(DECIDE) + overflowed
    if not decided:
        logging.error("the run sent no decisions")
        environment.process_exit_code = 1
    elif overflowed / decided > MAX_OVERFLOW:
        logging.error("%d of %d decisions (%.1f%%) gave the overflow number, more than LOADTEST_MAX_OVERFLOW=%s: "
                      "the pools are too small for this pace (loadtest/README.md)",
                      overflowed, decided, 100 * overflowed / decided, MAX_OVERFLOW)
        environment.process_exit_code = 1


def _wrong_decision(answer: dict[str, Any], vid: str | None, client: Client) -> str | None:
    """What is wrong with a 200 decision for this client, if anything."""
    if not isinstance(answer.get("token"), str) or not isinstance(answer.get("vid"), str):
        return "the decision has no token or vid"
    if vid is not None and answer["vid"] != vid:
        return f"the service replaced a valid visitor id {vid!r}"
    if answer.get("degraded"):
        return "degraded decision: the store did not answer"
    if answer.get("bot") != client.bot:
        return f"bot={answer.get('bot')} for {client.user_agent!r}"
    if SITE_KEY != SITE:
        return None  # another site's pools are its own business
    phone = answer.get("phone")
    expected = None if client.bot else EXPECTED_POOL[client.group]
    if (phone or {}).get("pool") != expected:
        return f"{client.ip} ({client.group}) got pool {(phone or {}).get('pool')!r}, not {expected!r}"
    if phone and phone["kind"] == "lease" and not phone.get("number", "").startswith("+7"):
        return f"a lease without an E.164 number: {json.dumps(phone)}"
    return None


def _wrong_number(answer: dict[str, Any], asked: float) -> str | None:
    """What is wrong with the leased number of a decision asked for at `asked`, as far as this
    process knows; the `load` site's visitors keep one pool (another site's may change pools,
    which lets their number go early)."""
    if SITE_KEY != SITE:
        return None
    phone = answer.get("phone") or {}
    number = phone.get("number") if phone.get("kind") == "lease" else None
    problem = holders.shown(answer["vid"], number, time.time())
    if number and not problem:
        holders.renewed(answer["vid"], number, asked + phone["hold"])
    return problem


def _text(response: Any) -> str:
    return (response.text or "")[:200]
