"""What no two sites of one installation may share, checked as their files load one by one.

A tracking number rings in one place, so of two sites that list it, or where one prints it as a
fixed number, one would have the other's calls. A report token opens the reports of every site
that has it, and erases their visitors; a read token reads them: nobody else may be given either,
as another site's token, a PBX's secret or a CRM's. A calls secret lets either site's PBX post
the other's calls, which one PBX for both may mean to: a warning.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from service.rules.engine import Site
from service.rules.ruleschema import dotted
from service.rules.settings import VENDOR_CREDENTIALS

Owner = tuple[str, str]  # a site, and the file that defines it
Path = tuple[str | int, ...]  # of a value in a site's file


class Finding(NamedTuple):
    path: Path  # in the file of the site checked
    message: str
    warning: bool = False  # serves, but likely not as meant


@dataclass(slots=True)
class Claims:
    """What the sites checked so far hold: each value → its site and file."""

    tracked: dict[str, Owner] = field(default_factory=dict)  # tracking numbers
    fixed: dict[str, Owner] = field(default_factory=dict)  # page phones, overflow and static numbers
    tokens: dict[str, Owner] = field(default_factory=dict)  # report and read tokens
    reading: set[str] = field(default_factory=set)  # which of them only read
    secrets: dict[bytes, Owner] = field(default_factory=dict)  # calls secrets
    given: dict[str, tuple[str, str, str]] = field(default_factory=dict)  # other credentials, and their names

    def check(self, site: Site, file: str) -> list[Finding]:
        """What `site` shares with the sites before it; what it holds is noted for those after."""
        return [*self._numbers(site, file), *self._credentials(site, file)]

    def _numbers(self, site: Site, file: str) -> list[Finding]:
        found = []
        for index, pool in enumerate(site.pools):
            for i, number in enumerate(pool.numbers):
                if (other := self.tracked.setdefault(number, (site.id, file)))[0] != site.id:
                    found.append(Finding(("pools", index, "numbers", i),
                                         f"{number} is also a tracking number of site {other[0]!r} ({other[1]})"))
                elif (other := self.fixed.get(number, (site.id, file)))[0] != site.id:
                    found.append(Finding(("pools", index, "numbers", i),
                                         f"{number} is a fixed number of site {other[0]!r} ({other[1]}): calls to it "
                                         "would be credited to this site's visitors"))
        fixed: list[tuple[Path, str | None]] = [(("phone",), site.phone)]
        for index, pool in enumerate(site.pools):
            fixed += [(("pools", index, "overflow"), pool.overflow), (("pools", index, "static"), pool.static)]
        for path, value in fixed:
            if value is None:
                continue
            if (other := self.tracked.get(value, (site.id, file)))[0] != site.id:
                found.append(Finding(path, f"{value} is a tracking number of site {other[0]!r} ({other[1]}): calls "
                                           "to it would be credited to that site's visitors"))
            self.fixed.setdefault(value, (site.id, file))
        return found

    def _credentials(self, site: Site, file: str) -> list[Finding]:
        found = []
        # What opens the site's reports: where in its file, as a message names it, and the token.
        opening: list[tuple[Path, str, str]] = [(("reports", "read_tokens", index), f"reports.read_tokens[{index}]",
                                                 token) for index, token in enumerate(site.read_tokens)]
        if site.report_token is not None:
            opening.insert(0, (("reports", "token"), "the report token", site.report_token))
        for path, name, token in opening:
            other = self.tokens.setdefault(token, (site.id, file))
            if other[0] != site.id:
                found.append(Finding(path, f"{name} is also that of site {other[0]!r} ({other[1]}): whoever has it "
                                           "reads both; give each its own"))
            elif token == site.report_token and path[1] == "read_tokens":
                found.append(Finding(path, f"{name} is the report token itself, which erases visitors too: give a "
                                           "reader a token of their own"))
            elif path[1] == "read_tokens":
                self.reading.add(token)
        if site.calls.secret is not None:
            other = self.secrets.setdefault(site.calls.secret, (site.id, file))
            if other[0] != site.id:
                found.append(Finding(("calls", "secret"), f"calls.secret is also that of site {other[0]!r} "
                                                          f"({other[1]}): a PBX that has it can post calls for either "
                                                          "site", warning=True))
        given = [(("calls", "secret"), (site.calls.secret or b"").decode()),
                 *((("calls", name), getattr(site.calls, name)) for name in VENDOR_CREDENTIALS),
                 *((("webhooks", index, "secret"), hook.secret) for index, hook in enumerate(site.webhooks))]
        for path, value in given:
            if value and (opener := self.tokens.get(value)):
                kind = "read token" if value in self.reading else "report token"
                token = f"this site's {kind}" if opener[0] == site.id else \
                    f"the {kind} of site {opener[0]!r} ({opener[1]})"
                found.append(Finding(path, f"{dotted(path)} is also {token}: whoever is given it reads that site's "
                                           "reports; give each its own"))
        for path, name, token in opening:
            if holder := self.given.get(token):
                found.append(Finding(path, f"{name} is also {holder[2]} of site {holder[0]!r} ({holder[1]}): whoever "
                                           "is given it reads this site's reports; give each its own"))
        for path, value in given:
            if value:
                self.given.setdefault(value, (site.id, file, dotted(path)))
        return found
