"""The traffic model shared by the Locust suite and the benchmarks: who visits, from where, why.

Pure Python with no Locust import, so `benchmarks/` draws its requests from the same mix.

- **Client addresses** are real GeoLite2 networks (`data/ips.json`, made by `make_ips.py`),
  weighted like a Russian shop's audience: Moscow, Saint Petersburg, Moscow Oblast, the
  other regions, and some foreign visitors.
- **Search phrases** follow a long-tailed distribution: a few head phrases make most of the
  traffic (Zipf weights), and about a third of phrases are one-off combinations, as in real
  search logs. They arrive as `utm_term` of paid clicks, as Yandex `text=` and Google `q=`
  in organic referrers, or not at all (direct and referral visits).
- **Pages**: a landing page with the campaign's parameters, then internal pages whose
  referrer is the previous page, on the site's own origin (so the service continues the visit).
- **Browsers**: desktop and mobile user agents, and a few crawlers (which must lease nothing).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlencode

DATA = Path(__file__).with_name("data") / "ips.json"
SITE = "load"
ORIGIN = "https://load.example"
CALLS_SECRET = "load-calls-secret-change-me"

# Share of visitors per GeoLite2 group; the groups are the keys of data/ips.json.
GROUP_WEIGHTS = {"RU-MOW": 30, "RU-SPE": 13, "RU-LEN": 2, "RU-MOS": 8, "RU-other": 32, "foreign": 15}
# The pool each group should be served from (None: no pool, the page keeps its own number).
EXPECTED_POOL = {"RU-MOW": "moscow", "RU-SPE": "saint-petersburg", "RU-LEN": "saint-petersburg",
                 "RU-MOS": "moscow-oblast", "RU-other": "russia", "foreign": None}

HEAD_PHRASES = (
    "купить кондиционер", "кондиционер", "сплит система", "кондиционеры купить недорого",
    "ремонт кондиционера", "установка кондиционера цена", "заправка кондиционера фреоном",
    "мобильный кондиционер", "купить кондиционер в москве", "сплит системы цены",
    "кондиционер daikin", "обслуживание сплит системы", "инверторный кондиционер",
    "кондиционер для квартиры", "монтаж сплит системы", "кондиционер без установки",
    "mitsubishi electric msz", "haier кондиционер отзывы", "air conditioner installation",
    "кондиционер ballu купить", "кондиционеры с установкой под ключ", "чистка кондиционера",
)
TAIL_HEADS = ("кондиционер", "сплит система", "сплит-система", "кондиционеры", "климатическая техника")
TAIL_MODIFIERS = (
    "купить", "цена", "недорого", "с установкой", "в кредит", "отзывы", "рейтинг 2024", "на 20 квадратов",
    "тихий", "инверторный", "для дома", "для офиса", "в спальню", "бу", "акция", "daikin", "haier",
    "mitsubishi", "dantex", "ballu", "lg", "samsung", "gree", "electrolux", "zanussi", "в рассрочку",
    "с доставкой", "белый", "настенный", "напольный", "кассетный", "канальный", "спб", "екатеринбург",
)
PAGES = (("/", 50), ("/catalog", 15), ("/catalog/split-systems", 10), ("/catalog/mobile", 5), ("/price", 10),
         ("/services/repair", 5), ("/contacts", 5))
CAMPAIGNS = ("brand", "ac-search", "ac-retarget", "repair-search", "spring-sale")
USER_AGENTS = (
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.0.0 Safari/537.36", 35),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/128.0.0.0 YaBrowser/24.10.0.0 Safari/537.36", 12),
    ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:131.0) Gecko/20100101 Firefox/131.0", 6),
    ("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.6 Safari/605.1.15", 5),
    ("Mozilla/5.0 (iPhone; CPU iPhone OS 17_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
     "Version/17.6 Mobile/15E148 Safari/604.1", 15),
    ("Mozilla/5.0 (Linux; Android 14; SM-A546B) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.0.0 Mobile Safari/537.36", 20),
    ("Mozilla/5.0 (Linux; Android 13; SM-X200) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/130.0.0.0 Safari/537.36", 3),
    ("Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)", 2),
    ("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)", 2),
)
BOT_MARKERS = ("bot", "crawler", "spider")


@dataclass(frozen=True, slots=True)
class Client:
    ip: str
    group: str  # a key of GROUP_WEIGHTS
    user_agent: str

    @property
    def bot(self) -> bool:
        return any(marker in self.user_agent.lower() for marker in BOT_MARKERS)


@dataclass(frozen=True, slots=True)
class PageView:
    url: str  # the page's full URL with its query string
    ref: str | None  # document.referrer


class Traffic:
    """Draws clients, landings and page views; deterministic for a given seed."""

    def __init__(self, seed: int | None = None, data: Path = DATA, origin: str = ORIGIN) -> None:
        self.rng = random.Random(seed)
        self.origin = origin  # of the site's pages: one of its `origins`, or internal pages would start visits
        groups = json.loads(data.read_text(encoding="utf-8"))["groups"]
        self.ips: dict[str, list[str]] = {name: [entry["ip"] for entry in groups[name]] for name in GROUP_WEIGHTS}
        self._groups = list(GROUP_WEIGHTS)
        self._group_weights = list(GROUP_WEIGHTS.values())
        self._head_weights = [1 / (rank + 1) for rank in range(len(HEAD_PHRASES))]  # Zipf, s = 1
        self._pages = [page for page, _ in PAGES]
        self._page_weights = [weight for _, weight in PAGES]
        self._agents = [agent for agent, _ in USER_AGENTS]
        self._agent_weights = [weight for _, weight in USER_AGENTS]

    def client(self) -> Client:
        group = self.rng.choices(self._groups, self._group_weights)[0]
        agent = self.rng.choices(self._agents, self._agent_weights)[0]
        return Client(self.rng.choice(self.ips[group]), group, agent)

    def vid(self) -> str:
        """A visitor id as the snippet makes one: 22 url-safe characters."""
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        return "".join(self.rng.choice(alphabet) for _ in range(22))

    def phrase(self) -> str:
        if self.rng.random() < 0.65:
            return self.rng.choices(HEAD_PHRASES, self._head_weights)[0]
        words = [self.rng.choice(TAIL_HEADS), *self.rng.sample(TAIL_MODIFIERS, self.rng.randint(1, 3))]
        self.rng.shuffle(words)
        return " ".join(words)

    def landing(self, page: str | None = None, word: str | None = None) -> PageView:
        """The first page of a visit, with the way the visitor came; `word` ends its search
        phrase, when it has one."""
        url = self.origin + (page or self.rng.choices(self._pages, self._page_weights)[0])
        way = self.rng.random()

        def phrase() -> str:
            return f"{self.phrase()} {word}" if word else self.phrase()

        if way < 0.35:  # a paid click: the ad system fills in utm_term
            engine = self.rng.choice(("yandex", "google"))
            click_id = "yclid" if engine == "yandex" else "gclid"
            params = {"utm_source": engine, "utm_medium": "cpc", "utm_campaign": self.rng.choice(CAMPAIGNS),
                      "utm_term": phrase(), click_id: str(self.rng.getrandbits(48))}
            ref = "https://yandex.ru/" if engine == "yandex" and self.rng.random() < 0.5 else None
            return PageView(f"{url}?{urlencode(params)}", ref)
        if way < 0.60:  # Yandex organic search
            return PageView(url, f"https://yandex.ru/search/?text={quote(phrase())}&lr=213")
        if way < 0.75:  # Google organic search
            return PageView(url, f"https://www.google.com/search?q={quote(phrase())}")
        if way < 0.80:  # a link on another site
            return PageView(url, self.rng.choice(("https://vk.com/away.php", "https://dzen.ru/a/xyz", "https://t.me/s/climate")))
        return PageView(url, None)  # typed in or bookmarked

    def next_page(self, previous: PageView, page: str | None = None) -> PageView:
        """An internal page, reached from the previous one."""
        return PageView(self.origin + (page or self.rng.choices(self._pages, self._page_weights)[0]), previous.url)

    def pages_per_visit(self) -> int:
        return self.rng.choices((1, 2, 3, 4, 5), (40, 25, 15, 12, 8))[0]


def decide_path(view: PageView, vid: str | None, site: str = SITE, visit: str | None = None) -> str:
    """The snippet's decision request; `visit` is the last decision's token, which continues its visit."""
    params = {"site": site, "url": view.url}
    if view.ref:
        params["ref"] = view.ref
    if vid:
        params["vid"] = vid
    if visit:
        params["visit"] = visit
    return "/v1/decide?" + urlencode(params)


def event_body(kind: str, token: str, event_id: str | None = None, name: str | None = None) -> bytes:
    event: dict[str, str] = {"type": kind, "token": token}
    if event_id:
        event["id"] = event_id
    if name:
        event["name"] = name
    return json.dumps(event, separators=(",", ":")).encode()


def signed_call(number: str, call_id: str, start: float, talk_seconds: int, caller: str,
                secret: str = CALLS_SECRET) -> tuple[bytes, str]:
    """A call webhook body and its `X-Swapline-Signature` header (docs/CALLS.md)."""
    body = json.dumps({"call_id": call_id, "called": number, "caller": caller, "start": round(start, 3),
                       "talk_seconds": talk_seconds, "status": "completed"}, separators=(",", ":")).encode()
    return body, "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
