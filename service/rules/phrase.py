"""Search phrase and traffic source of a visit."""

from __future__ import annotations

import contextlib
import functools
import re
import unicodedata
from collections.abc import Callable, Container
from dataclasses import dataclass
from typing import NamedTuple
from urllib.parse import unquote_to_bytes, urlsplit

_MAX_LENGTH = 200

# Host patterns (matched against the host without "www.") and the parameters that carry the
# phrase. The android-app hosts are what the Google and Yandex apps send as the referrer.
_ENGINES: dict[str, tuple[str, tuple[str, ...]]] = {
    "yandex": (r"yandex\.(?:com?\.)?[a-z]{2,3}|ya\.ru|ru\.yandex\.searchplugin", ("text",)),
    "google": (r"google\.(?:com?\.)?[a-z]{2,3}|com\.google\.android\.googlequicksearchbox", ("q",)),
    "bing": (r"(?:cn\.)?bing\.com", ("q",)),
    "mail": (r"(?:go|search)\.mail\.ru", ("q",)),
    "duckduckgo": (r"(?:html\.|lite\.)?duckduckgo\.com", ("q",)),
    "rambler": (r"nova\.rambler\.ru", ("query",)),
    "yahoo": (r"(?:[a-z]{2}\.)?search\.yahoo\.com|search\.yahoo\.co\.jp", ("p",)),
    "baidu": (r"(?:m\.)?baidu\.com", ("wd", "word")),
    "ecosia": (r"ecosia\.org", ("q",)),
    "startpage": (r"(?:[a-z]+\.)?startpage\.com", ("query", "q")),
    "qwant": (r"qwant\.com", ("q",)),
    "brave": (r"search\.brave\.com", ("q",)),
    "seznam": (r"search\.seznam\.cz", ("q",)),
    "naver": (r"(?:m\.)?search\.naver\.com", ("query",)),
}
_ENGINE_HOST = re.compile("|".join(f"(?P<{name}>{host})" for name, (host, _) in _ENGINES.items()))
_REFERRER_SCHEMES = frozenset({"http", "https", "android-app"})
_CLICK_IDS = ("gclid", "yclid", "ymclid", "gbraid", "wbraid", "msclkid", "fbclid", "ttclid")
_PAGE_PARAMS = frozenset(
    {"utm_term", "utm_source", "utm_medium", "utm_campaign", "utm_content", *_CLICK_IDS}
)
# Ad click ids name their ad network even when the browser sent no referrer.
_PAID_CLICK_IDS = {"gclid": "google", "gbraid": "google", "wbraid": "google", "yclid": "yandex", "msclkid": "bing"}
# Ad servers, whose referrer names an ad's click without its click id (an account whose
# auto-tagging is off): Yandex's click counter and its ad network (РСЯ), Google's ad click
# redirect and display network (and their subdomains).
_YANDEX_ADS = re.compile(r"(?:yabs|an)\.yandex\.(?:com?\.)?[a-z]{2,3}")
_GOOGLE_ADS = ("googleadservices.com", "googlesyndication.com", "doubleclick.net")
_GOOGLE_AD_SUBDOMAINS = tuple(f".{host}" for host in _GOOGLE_ADS)
# Each ad click id's value as its platform issues it; anything else (junk, or a crafted
# `=HYPERLINK(…)` for the offline-conversion files) is dropped, and the visit keeps the source
# the parameter's name gives it. yclid is a number (a 64-bit one today); gclid, gbraid and
# wbraid are base64url; the others' forms are not documented: letters, digits, `_`, `-`, `.`.
# Each begins with a letter or digit, so no spreadsheet reads one as a formula.
_BASE64URL = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_-]{{0,{_MAX_LENGTH - 1}}}")
_UNDOCUMENTED = re.compile(rf"[A-Za-z0-9][A-Za-z0-9_.-]{{0,{_MAX_LENGTH - 1}}}")
_CLICK_ID_FORMS = {"yclid": re.compile(r"[0-9]{1,32}"), "gclid": _BASE64URL, "gbraid": _BASE64URL,
                   "wbraid": _BASE64URL, "ymclid": _UNDOCUMENTED, "msclkid": _UNDOCUMENTED,
                   "fbclid": _UNDOCUMENTED, "ttclid": _UNDOCUMENTED}
# A value that decodes and cleans to itself: ASCII letters, digits, `_`, `-` and `.`.
_PLAIN = re.compile(rf"[\w.-]{{1,{_MAX_LENGTH}}}", re.ASCII)
# Unfilled ad-system macros such as "{keyword}" or "{{campaign}}" carry no data.
_PLACEHOLDER = re.compile(r"\{+[^{}]*\}+")
# A value encoded twice (a UTM builder's output pasted into another, a redirect's): what one
# decoding leaves is a UTF-8 letter of two bytes or more, still percent-encoded.
_ENCODED_TWICE = re.compile(r"%[C-Fc-f][0-9A-Fa-f]%[89ABab][0-9A-Fa-f]")
# What ad systems put in `utm_term` that nobody searched: Direct's autotargeting impressions, and
# the empty values of broken tag managers and analytics.
_NO_PHRASE = frozenset({"---autotargeting", "(not set)", "(not provided)", "undefined", "null"})
# Nor is a web address: Yandex's Turbo pages refer with the page's own as their `text`.
_ADDRESS = ("http://", "https://")
# Yandex Direct's `{keyword}` is the ad's keyword phrase with its operators: `!word` (this form),
# `+word` (this stop word), `"..."` (no other words), `[...]` (this order), `-word` (none of it:
# a word the visitor did not search). A `+` between two letters is a space encoded twice.
_OPERATOR = re.compile(r'["\[\]]|(?<!\S)[!+]+|(?<!\S)-[!+]?[^\W\d_]\S*')
_OPERATOR_MARK = re.compile(r'["\[\]!+-]')
_JOINED_BY_PLUS = re.compile(r"(?<=[^\W\d_])\+(?=[^\W\d_])")

# What no search phrase or campaign name holds but a crafted link can: control characters (NUL,
# escape...), read as spaces, and invisible format characters (a bidi override shows the text
# after it reversed, zero-width spaces and soft hyphens split a word unseen), dropped.
_INVISIBLE = {"Cc": " ", "Cf": ""}
_WORD_CHARACTER = re.compile(r"\w")
_HOST = re.compile(r"[\w.:-]+")  # a referrer's host: a name (of any script), an IPv4 or IPv6 address

# Anything but a letter or digit, except a hyphen between two of them ("wi-fi").
_SEPARATOR = re.compile(r"(?:_|[^\w-]|(?<![^\W_])-|-(?![^\W_]))+")

NOT_SET = "(not set)"  # the medium of a visit tagged with utm_source but no utm_medium


class Traffic(NamedTuple):  # a tuple: decision plans are keyed by it, hashed and compared in C
    phrase: str | None
    engine: str | None
    source: str | None
    medium: str
    campaign: str | None
    content: str | None
    click_id: str | None


class Landing(NamedTuple):
    """What a page URL's own parameters say about how the visitor came (`utm_*`, ad click ids)."""

    term: str | None  # utm_term, decoded
    source: str | None
    medium: str | None
    campaign: str | None
    content: str | None
    click_id: str | None  # the name of the ad click id parameter, never its value


class Referral(NamedTuple):
    """What the referrer says: its host and, for a search engine, the engine and its phrase."""

    host: str | None
    engine: str | None
    phrase: str | None


NO_REFERRAL = Referral(None, None, None)


def parse_traffic(url: str, referrer: str | None) -> Traffic:
    try:
        query = urlsplit(url).query
    except ValueError:  # not a URL (e.g. a broken IPv6 host): nothing to read from it
        query = ""
    return traffic(landing(query)[0], referral(referrer))


def landing(query: str) -> tuple[Landing, dict[str, str]]:
    """The traffic parameters of a page URL's query string, and its ad click ids with their
    values (for call records and offline conversions; decisions only need to know which one
    came)."""
    params = _params(query, _PAGE_PARAMS)
    landed = Landing(
        term=_searched(params.get("utm_term")),
        source=_tag(params.get("utm_source")),
        medium=_tag(params.get("utm_medium")),
        campaign=_tag(params.get("utm_campaign")),
        content=_tag(params.get("utm_content")),
        click_id=next((name for name in _CLICK_IDS if name in params), None),
    )
    if landed.click_id is None:
        return landed, {}
    # A well-formed click id needs no decoding: its value is the parameter as sent.
    return landed, {name: value for name, value in params.items() if name in _CLICK_IDS and valid_click_id(name, value)}


def valid_click_id(name: str, value: str) -> bool:
    """Whether `value` is an ad click id `name` as its platform issues it (`_CLICK_ID_FORMS`)."""
    form = _CLICK_ID_FORMS.get(name)
    return form is not None and form.fullmatch(value) is not None


def traffic(landed: Landing, referred: Referral) -> Traffic:
    """The visit's traffic: the page's own parameters first, then what the referrer says."""
    engine, click_id = referred.engine, landed.click_id
    ad_network = _ad_network(referred.host) if referred.host else None
    medium = landed.medium
    if medium is None:
        if click_id in _PAID_CLICK_IDS or ad_network:
            medium = "cpc"
        elif landed.source is not None:  # tagged without a medium: not direct, as GA4 says too
            medium = NOT_SET
        elif engine is not None:
            medium = "organic"
        else:
            medium = "referral" if referred.host is not None else "direct"
    return Traffic(
        phrase=search_phrase(landed.term) or search_phrase(referred.phrase),
        engine=engine,
        source=landed.source or engine or _PAID_CLICK_IDS.get(click_id or "") or ad_network or referred.host,
        medium=medium,
        campaign=landed.campaign,
        content=landed.content,
        click_id=click_id,
    )


def _ad_network(host: str) -> str | None:
    """The ad network `host` is an ad server of, if it is one."""
    if _YANDEX_ADS.fullmatch(host):
        return "yandex"
    if host in _GOOGLE_ADS or host.endswith(_GOOGLE_AD_SUBDOMAINS):
        return "google"
    return None


def search_phrase(text: str | None) -> str | None:
    """What the visitor searched, of a `utm_term` or a search engine's phrase: Direct's operators
    and minus words left out (`_OPERATOR`), None where it holds no search (`_NO_PHRASE`)."""
    if text is None or (folded := text.casefold()) in _NO_PHRASE or folded.startswith(_ADDRESS):
        return None
    if _OPERATOR_MARK.search(text) is None:  # nearly always
        return text
    return " ".join(_OPERATOR.sub(" ", _JOINED_BY_PLUS.sub(" ", text)).split()) or None


def referral(referrer: str | None) -> Referral:
    """The referrer's host, its search engine and that engine's phrase."""
    if not referrer:
        return NO_REFERRAL
    if not referrer.isascii():
        # Lone surrogates (valid in JSON input) would make the host unencodable downstream.
        referrer = referrer.encode("utf-8", "replace").decode("utf-8")
    # The host ends before the query, and the query is the long, unique part (a site's own
    # pages refer to each other with campaign tags and click ids): only a search engine's
    # referrer is read past it, for the phrase.
    found = _origin(referrer.partition("?")[0])
    if found.engine is None:
        return found
    try:
        query = urlsplit(referrer).query
    except ValueError:  # not reached: the URL up to its query parsed, and that is where urlsplit checks
        return found
    names = _ENGINES[found.engine][1]
    params = _params(query, names)
    return found._replace(phrase=next((text for name in names if (text := _searched(params.get(name)))), None))


@functools.lru_cache(maxsize=4096)
def _origin(address: str) -> Referral:
    """The host and search engine of a referrer's URL, given up to its query."""
    try:
        parts = urlsplit(address)
    except ValueError:
        return NO_REFERRAL
    if parts.scheme not in _REFERRER_SCHEMES or not parts.hostname:
        return NO_REFERRAL
    host = unicode_host(_visible(parts.hostname).rstrip(".").removeprefix("www."))[:_MAX_LENGTH]
    if not _HOST.fullmatch(host):  # a space, a NUL: no browser sends such a host
        return NO_REFERRAL
    match = _ENGINE_HOST.fullmatch(host)
    return Referral(host or None, match.lastgroup if match else None, None)


def unicode_host(host: str) -> str:
    """A host under a national top-level domain as people write it: «окна.рф», not the punycode
    a browser sends («xn--80atjc.xn--p1ai»). Others stay as sent: under `.com` or `.ru` a
    Cyrillic name may pass for a Latin one («аррӏе.com»), and browsers show those in punycode."""
    if not host.rpartition(".")[2].startswith("xn--"):
        return host
    try:
        return host.encode("ascii").decode("idna")
    except UnicodeError:  # not valid punycode: as sent
        return host


def _params(query: str, names: Container[str]) -> dict[str, str]:
    """Query parameters in `names`, first value wins; values still percent-encoded, see `_text`.

    Only the parameters read are decoded: page filters, ad junk and click ids cost nothing.
    """
    params: dict[str, str] = {}
    for pair in query.split("&"):
        name, _, value = pair.partition("=")
        if value and name in names:  # a blank value is no value
            params.setdefault(name, value)
    return params


# The same campaigns and phrases come again and again (click ids, unique per visit, are not
# decoded at all): decoding is a third of the cost of a page view's traffic, so remember it.
@functools.lru_cache(maxsize=4096)
def _text(value: str | None) -> str | None:
    """Decode a raw parameter value and clean it for display; None if nothing is left."""
    if value is None:
        return None
    if _PLAIN.fullmatch(value):  # nothing to decode or clean: ad click ids, most campaign names
        return value
    raw = percent_decoded(value)
    if raw is None:
        # A raw (not percent-encoded) URL carries its text as is; lone surrogates (valid in JSON
        # input) cannot be encoded, so they become "?".
        raw = unquote_to_bytes(value.replace("+", " ").encode("utf-8", "replace"))
    try:
        value = raw.decode("utf-8")
    except UnicodeDecodeError:
        # Old Russian sites and search forms still send cp1251.
        try:
            value = raw.decode("cp1251")
        except UnicodeDecodeError:
            value = raw.decode("utf-8", "replace")
    if "%" in value and _ENCODED_TWICE.search(value):
        with contextlib.suppress(UnicodeDecodeError):  # else not what a second encoding leaves: as it came
            value = unquote_to_bytes(value).decode("utf-8")
    value = " ".join(_visible(value).split())[:_MAX_LENGTH].rstrip()
    if not value or _PLACEHOLDER.fullmatch(value):
        return None
    return value


def _searched(value: str | None) -> str | None:
    """A search phrase's parameter as `_text` reads it; None where it holds a phone number or an
    e-mail address, which nothing keeps (the phrase goes to visits, logs and reports) and no
    text prints (`insert_keyword`)."""
    text = _text(value)
    if text is not None and _PERSONAL_MARK.search(text) and (_PHONE.search(text) or _EMAIL.search(text)):
        return None
    return text


def _tag(value: str | None) -> str | None:
    """A `utm_*` tag's parameter as `_text` reads it, with an e-mail address (a mailing's
    subscriber) or a phone number (a lead form's) in it replaced: a number as people write one
    (`8 (916) 222-33-44`, `+79162223344`) or a Russian mobile's eleven digits (`lead_79162223344`).
    Other digit runs stay: ad ids (`utm_content={ad_id}`), not phones."""
    text = _text(value)
    if text is None or not _PERSONAL_MARK.search(text):
        return text
    return without_email(_DIGIT_RUN.sub(_phone_hidden, text))


def _phone_hidden(run: re.Match[str]) -> str:
    written = run[0]
    return PHONE_WRITTEN if not written.isdigit() or _MOBILE.fullmatch(written) else written


def without_email(text: str) -> str:
    """`text` with any e-mail address in it as `(e-mail)`."""
    return _EMAIL.sub(EMAIL_WRITTEN, text) if "@" in text else text


def _visible(text: str) -> str:
    """The text without its control and format characters (`_INVISIBLE`)."""
    if text.isprintable():  # nearly always: one pass in C
        return text
    return "".join([_INVISIBLE.get(unicodedata.category(char), char) for char in text])


def percent_decoded(value: str) -> bytes | None:
    """The bytes a form-encoded value stands for (`+` a space), as `unquote_to_bytes` reads them,
    five times faster on the long percent-encoded page URLs, referrers and phrases decisions
    carry: each %XX becomes \\xXX for the C "unicode_escape" decoder, whose code points 0-255 are
    the bytes. None where the value is not plain ASCII with well-formed escapes."""
    if not value.isascii():
        return None
    escaped = value.replace("\\", "\\\\").replace("%", "\\x").replace("+", " ")
    try:
        return escaped.encode().decode("unicode_escape").encode("latin-1")
    except UnicodeDecodeError:  # a stray %: not an escape
        return None


# Cached too: the decision code normalises every visit's phrase besides reading its words.
@functools.lru_cache(maxsize=20_000)
def normalise(text: str) -> str:
    text = lettered(as_ye(unicodedata.normalize("NFC", text).lower()))
    if text.replace(" ", "").isalnum():  # most phrases: words and spaces, nothing to separate
        return " ".join(text.split())
    return lettered(separated(text))  # words that separating joins are read for look-alikes again


def lettered(text: str) -> str:
    """Lower-case text with each Russian word's Latin look-alikes (`_LOOK_ALIKES`) in Cyrillic."""
    return _WORD.sub(_in_cyrillic, text) if not text.isascii() and _LATIN_LETTER.search(text) else text


def separated(text: str) -> str:
    """Lower-case text's words, as the words and spaces of `normalise`."""
    return " ".join(_SEPARATOR.sub(" ", _ABBREVIATION.sub(_unpunctuated, text)).split())


# A Russian word with Latin letters that look like Cyrillic ones in it («oкна», «пBх»), typed so
# or crafted, reads as the word it looks like.
_LATIN_LETTER = re.compile("[a-z]")
_CYRILLIC_LETTER = re.compile("[а-я]")
_WORD = re.compile(r"\w+")
_LOOK_ALIKES = str.maketrans("aeopcyxkmthb", "аеорсухкмтнв")
# Single letters written with a slash or dots between are one word: «б/у», «б.у.» and «бу».
_ABBREVIATION = re.compile(r"(?<!\w)[^\W\d_](?:[./][^\W\d_])+\.?(?!\w)")


def _in_cyrillic(word: re.Match[str]) -> str:
    found = word[0]
    mixed = _LATIN_LETTER.search(found) and _CYRILLIC_LETTER.search(found)
    return found.translate(_LOOK_ALIKES) if mixed else found


def _unpunctuated(abbreviation: re.Match[str]) -> str:
    return abbreviation[0].replace("/", "").replace(".", "")


def as_ye(text: str) -> str:
    """Russian text often writes "yo" as plain "ye", so "ye" is the form both sides agree on
    (by `str.replace`: `str.translate` is many times slower on Russian text)."""
    return text.replace("\N{CYRILLIC SMALL LETTER IO}", "\N{CYRILLIC SMALL LETTER IE}")


def _sentence(text: str) -> str:
    """The text with its first letter in upper case, past a quote, an emoji or a dash before it;
    as typed where its first word has a capital already: «iPhone», not «IPhone»."""
    word = text.partition(" ")[0]
    if word != word.lower():
        return text
    if text[:1].isalnum():  # nearly always
        return text[:1].upper() + text[1:]
    first = _WORD_CHARACTER.search(text)
    return text if first is None else text[:first.start()] + first[0].upper() + text[first.end():]


def _title(text: str) -> str:
    return " ".join(_sentence(word) for word in text.split(" "))


_CASES: dict[str, Callable[[str], str]] = {
    "keep": str,
    "lower": str.lower,
    "upper": str.upper,
    "sentence": _sentence,
    "title": _title,
}
KEYWORD_CASES = tuple(_CASES)


# What a crafted link's phrase could put on a site for its callers to see: a phone number (ten
# digits or more, however spaced), an e-mail address, a link.
_PHONE_DIGITS = r"(?:\d[\s().+-]*){10,}"
_CONTACT = re.compile(rf"{_PHONE_DIGITS}|@|://|www\.|\w\.(?:[a-z]{{2,}}|рф)(?!\w)", re.IGNORECASE)
# Personal data a visitor may type into a search, or a mailing put into its tags.
_PHONE = re.compile(_PHONE_DIGITS)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*")
_PERSONAL_MARK = re.compile(r"[\d@]")  # which most phrases lack: one quick scan
EMAIL_WRITTEN = "(e-mail)"  # what a tag shows for the address it held
# A phone number in a tag: ten digits or more, after a + or with separators between them, or
# eleven that are a Russian mobile's (7 or 8, then 9). A bare run of digits otherwise is an id.
_DIGIT_RUN = re.compile(r"(?<!\d)\+?\d(?:[\s().-]*\d){9,}(?!\d)")
_MOBILE = re.compile(r"[78]9\d{9}")
PHONE_WRITTEN = "(phone)"
# What a phrase may end in that the text around it would follow oddly: «Окна!!! в Москве», and
# the dash a town left behind («окна — в москве»: `service.rules.placewords`).
_TRAILING = " !?.,;:…-–—"
_CONTACT_MARK = re.compile(r"[\d@.:]")  # which most phrases lack: one quick scan


def insert_keyword(
    phrase: str | None, default: str, max_length: int | None = None, case: str = "keep"
) -> str:
    """The phrase without trailing punctuation, in the given case; or the default as written when
    there is no phrase, it is longer than max_length (as Google Ads keyword insertion does) or
    it holds contacts (`_CONTACT`)."""
    try:
        change_case = _CASES[case]
    except KeyError:
        raise ValueError(f"Unknown case {case!r}, expected one of: {', '.join(_CASES)}") from None
    text = change_case((phrase or "").strip().rstrip(_TRAILING))
    if not text or (max_length is not None and len(text) > max_length) or _has_contacts(text):
        return default
    return text


def _has_contacts(text: str) -> bool:
    return _CONTACT_MARK.search(text) is not None and _CONTACT.search(text) is not None


@dataclass(frozen=True, slots=True)
class Keyword:
    """`keyword(default, max, case)` in texts: the visit's phrase by `insert_keyword`. A value,
    equal for equal phrases, rather than a closure per visit, so renders can be remembered."""

    phrase: str | None

    def __call__(self, default: str = "", max: int | None = None, case: str = "keep") -> str:
        return insert_keyword(self.phrase, default, max, case)
