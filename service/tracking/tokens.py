"""Decision tokens: what the service decided for a visitor, signed so beacons can prove it.

A token is `hex(json) "." hex(MAC)`, the MAC being keyed BLAKE2b (RFC 7693's MAC mode) of
the payload (its JSON, not its hex: half the blocks), 16 bytes, with a key derived from the
service secret. It may carry an attachment between the two, signed with it (`hex(json) "."
attachment "." hex(MAC)`, the MAC of the attachment, a dot and the payload, in that order):
a part many tokens share, such as a visit's, which the signer hashes once and its reader
remembers by its text. Events carry it back; the service trusts the experiment map inside
only when the MAC verifies, compared in constant time. Only the service signs and reads
tokens, so the encoding is chosen for speed: every page view signs one, and keyed BLAKE2b
costs a third of an HMAC-SHA256 through OpenSSL; hex is decoded by a table, where CPython's
base64 takes a branchy loop a character, and the MAC in hex is checked without decoding.

Older tokens are still read, since a visit's token comes back for as long as its visitor's
last non-direct arrival counts (a site's `visits.lookback`, 90 days at most by default).
Those signed before 2026-12-02 carry their payload in base64url (`eyJ…`, where hex starts
`7b`), and their MAC is of its base64 text; those before 2026-12-01 also a base64url MAC (22
characters) of the payload's part, a dot and the attachment. Remove `_legacy` and base64
payloads after 2027-03-02.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import hmac
from typing import Any

import orjson

MAC_BYTES = 16  # 128 bits: forgery stays out of reach, the token stays short


class TokenSigner:
    def __init__(self, secret: bytes) -> None:
        key = hmac.digest(secret, b"decision tokens", "sha256")  # the secret's other uses never see this key
        self._keyed = hashlib.blake2b(key=key, digest_size=MAC_BYTES)
        # A page's heartbeats bring its token back every few seconds while it is open: the
        # answer is a function of the token alone, so remember it (bounded). Payloads are
        # shared between the requests that carry one token: read them, never change them.
        self.verify = functools.lru_cache(maxsize=4096)(self._verify)
        # The pages of a visit sign and read the same attachment: hashed once (bounded).
        self._after = functools.lru_cache(maxsize=4096)(self._absorbed)

    def sign(self, payload: dict[str, Any], attachment: str = "") -> str:
        """`attachment`: text without dots (e.g. from `encode`), carried and signed with `payload`."""
        raw = orjson.dumps(payload)
        mac = self._mac(attachment, raw)
        return f"{raw.hex()}.{attachment}.{mac}" if attachment else f"{raw.hex()}.{mac}"

    def _verify(self, token: str) -> dict[str, Any] | None:
        """The payload, or None for anything not signed by this secret."""
        opened = self.open(token)
        return opened[0] if opened else None

    def open(self, token: str) -> tuple[dict[str, Any], str] | None:
        """The payload and the attachment ("" if none), or None for anything not signed by this
        secret. Not remembered: for tokens that come once (a page view's last token)."""
        signed, _, mac = token.rpartition(".")
        body, _, attached = signed.partition(".")
        hexed = body.startswith("7b")
        try:
            raw = bytes.fromhex(body) if hexed else decode(body)
        except ValueError:
            return None
        if hexed and raw.hex() != body:  # fromhex also takes capitals and spaces: one token, one spelling
            return None
        if len(mac) == 2 * MAC_BYTES and mac.isascii():  # of the payload's bytes; in base64 tokens, of its text
            if not hmac.compare_digest(mac, self._mac(attached, raw if hexed else body.encode())):
                return None
        elif not self._legacy(signed, mac):
            return None
        try:
            payload = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return None
        return (payload, attached) if isinstance(payload, dict) else None

    def _mac(self, attachment: str, payload: bytes) -> str:
        mac = self._after(attachment).copy()
        mac.update(payload)
        return mac.hexdigest()

    def _absorbed(self, attachment: str) -> hashlib.blake2b:
        """The keyed hash once it has taken the attachment and its dot, if any (the key's
        block is hashed once, not per token)."""
        mac = self._keyed.copy()
        if attachment:
            mac.update(attachment.encode() + b".")
        return mac

    def _legacy(self, signed: str, mac: str) -> bool:
        """Whether `mac` is the MAC of a token signed before 2026-12-01."""
        try:
            given = decode(mac)
        except ValueError:
            return False
        old = self._keyed.copy()
        old.update(signed.encode())
        return hmac.compare_digest(given, old.digest())


def attachment(token: str) -> str:
    """What `sign` attached to the token ("" if nothing): to be trusted once `verify` passed."""
    return token.rpartition(".")[0].partition(".")[2]


def encode(raw: bytes) -> str:
    """base64url without padding, as tokens carry their parts."""
    # base64.urlsafe_b64encode, without its two Python frames: every page view signs a token
    return binascii.b2a_base64(raw, newline=False).translate(_URLSAFE).rstrip(b"=").decode()


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def decode(text: str) -> bytes:
    # base64.urlsafe_b64decode without its frames: every page view's token is read back
    return binascii.a2b_base64(text.encode().translate(_STANDARD) + b"=" * (-len(text) % 4), strict_mode=True)


_STANDARD = bytes.maketrans(b"-_", b"+/")
