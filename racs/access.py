"""Access control from the seed's tables: who may reach which SE, which AID, which APDU.

Seed, "Access Control": a *Users-Table* gives each certificate CN its list of
SEIDs; each SEID has a *SEID-Table* giving, per AID, the CNs allowed. A SELECT
by AID is checked against the SEID-Table; every APDU then goes through the
APDU filters (mask and prefix, allow or deny, first match wins). File formats
are those of the seed and its author's server (see docs/racs.md); a file that
does not parse stops the server with the file name and line number.

Every check raises a :class:`RacsError` with a reason the user can act on;
none returns a bool that a caller could forget to test.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from racs.errors import BadParameterError, CommandCode, ConfigError, UnauthorizedError, shown

ALL = "*"
# A count on a users or SEID-Table line: ASCII digits ('²'.isdigit() is true, int('²')
# fails), and few of them (int() of 5000 digits fails; no line lists a billion names).
_COUNT = re.compile(r"[0-9]{1,9}")


def read_config_text(path: Path) -> str:
    """The text of racs.toml or a file it names, or a ConfigError saying why not.

    A byte that is not UTF-8 is named by its line, as any other fault in these files.
    """
    try:
        data = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read: {err.strerror}") from err
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 (byte {data[err.start]:#04x})") from None


def _lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(line number, tokens) of a seed-style file: ``//`` comments, ``***`` banners."""
    text = read_config_text(path)
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("//", 1)[0].strip()
        if not line or line.startswith("*"):
            continue
        yield number, re.findall(r'"[^"]*"|\S+', line)


def _hex(token: str, where: str) -> bytes:
    try:
        return bytes.fromhex(token)
    except ValueError:
        raise ConfigError(f"{where}: {shown(token)} is not hex") from None


def _count(token: str) -> int | None:
    """The number a count token holds, or None if it is not a plain count (see _COUNT)."""
    return int(token) if _COUNT.fullmatch(token) else None


def load_users(path: Path) -> dict[str, frozenset[str]]:
    """``CN N SEID1 .. SEIDN``; ``CN -1`` (or ``CN * ``) grants every SEID."""
    users: dict[str, frozenset[str]] = {}
    for number, tok in _lines(path):
        where = f"{path}:{number}"
        if len(tok) < 2:
            raise ConfigError(f"{where}: expected 'CN count SEID...'")
        cn, count = tok[0].strip('"'), tok[1]
        if count in ("-1", ALL):
            users[cn] = frozenset({ALL})
            continue
        if _count(count) != len(tok) - 2:
            raise ConfigError(f"{where}: count {shown(count)} does not match {len(tok) - 2} SEIDs")
        users[cn] = frozenset(tok[2:])
    return users


@dataclass(frozen=True)
class AidRule:
    """One SEID-Table line: ``AID|default  no|yes  N  CN...`` (no = white list)."""

    aid: bytes | None  # None for the "default" line
    black_list: bool
    users: frozenset[str]

    def allows(self, cn: str) -> bool:
        return (cn in self.users) != self.black_list


def load_seid_table(path: Path) -> list[AidRule]:
    rules: list[AidRule] = []
    for number, tok in _lines(path):
        where = f"{path}:{number}"
        count = _count(tok[2]) if len(tok) >= 3 else None
        if count is None or tok[1].lower() not in ("yes", "no"):
            raise ConfigError(f"{where}: expected 'AID|default yes|no count CN...'")
        if count != len(tok) - 3:
            raise ConfigError(f"{where}: count {count} does not match {len(tok) - 3} CNs")
        aid = None if tok[0].lower() == "default" else _hex(tok[0], where)
        users = frozenset(t.strip('"') for t in tok[3:])
        rules.append(AidRule(aid, tok[1].lower() == "yes", users))
    return rules


@dataclass(frozen=True)
class ApduFilter:
    """``allow|deny MASK PREFIX [user=CN] [seid=SEID] [aid=AID|none]``."""

    allow: bool
    mask: bytes
    prefix: bytes
    user: str = ALL
    seid: str = ALL
    aid: str = ALL  # hex AID, "none" (nothing selected) or "*"

    def matches(self, cn: str, seid: str, aid: bytes | None, apdu: bytes) -> bool:
        if self.user not in (ALL, cn) or self.seid not in (ALL, seid):
            return False
        if self.aid != ALL and not self._matches_aid(aid):
            return False
        if len(apdu) < len(self.mask):
            return False
        return all(
            (a & m) == (p & m) for a, m, p in zip(apdu, self.mask, self.prefix, strict=False)
        )

    def _matches_aid(self, aid: bytes | None) -> bool:
        """A deny rule also catches a selection by a prefix of its AID (the card may
        run that application); an allow rule needs the AID in full."""
        if aid is None or self.aid == "none":
            return aid is None and self.aid == "none"
        selected = aid.hex().upper()
        if self.allow:
            return self.aid == selected
        return bool(selected) and self.aid.startswith(selected)


def load_filters(path: Path) -> list[ApduFilter]:
    filters: list[ApduFilter] = []
    for number, tok in _lines(path):
        where = f"{path}:{number}"
        if len(tok) < 3 or tok[0].lower() not in ("allow", "deny"):
            raise ConfigError(f"{where}: expected 'allow|deny MASK PREFIX [key=value...]'")
        mask, prefix = _hex(tok[1], where), _hex(tok[2], where)
        if len(mask) != len(prefix) or not mask:
            raise ConfigError(f"{where}: MASK and PREFIX must have the same, non-zero length")
        extra: dict[str, str] = {}
        for item in tok[3:]:
            key, sep, value = item.partition("=")
            if not sep or key not in ("user", "seid", "aid") or not value:
                raise ConfigError(f"{where}: unknown qualifier {shown(item)}")
            extra[key] = value.strip('"').upper() if key == "aid" and value != "none" else value
        filters.append(ApduFilter(tok[0].lower() == "allow", mask, prefix, **extra))
    return filters


@dataclass
class AccessPolicy:
    users: dict[str, frozenset[str]] = field(default_factory=dict)
    seid_tables: dict[str, list[AidRule]] = field(default_factory=dict)
    filters: list[ApduFilter] = field(default_factory=list)
    se_default_access: bool = False  # AID with no line and no "default" line
    filter_default_allow: bool = True  # APDU that no filter matches
    require_select: bool = False  # refuse APDUs before an allowed SELECT

    def visible_seids(self, cn: str, seids: Iterable[str]) -> list[str]:
        granted = self.users.get(cn, frozenset())
        return [s for s in seids if ALL in granted or s in granted]

    def check_seid(self, cn: str, seid: str, known: bool, command: CommandCode) -> None:
        if not known:
            raise BadParameterError(f"no secure element has SEID {seid}", command)
        if not self.visible_seids(cn, [seid]):
            raise UnauthorizedError(f"user {cn} may not use SEID {seid}", command)

    def check_select(self, cn: str, seid: str, aid: bytes) -> None:
        """Judge a SELECT by AID as the card will read it.

        ISO 7816-4 lets a card select by a leading part of an AID (Java Card
        does, for 5 bytes or more), so a SELECT of a prefix may reach any
        application whose AID starts with it: it counts as every listed AID it
        is a prefix of, and, unless it names a listed AID in full, as an AID
        of no line too (``default``). All of them must allow the user.
        """
        rules = self.seid_tables.get(seid, [])
        listed = [r for r in rules if r.aid is not None and aid and r.aid.startswith(aid)]
        exact = any(r.aid == aid for r in listed)
        verdicts = [r.allows(cn) for r in listed]
        if not exact:
            default = next((r for r in rules if r.aid is None), None)
            verdicts.append(default.allows(cn) if default is not None else self.se_default_access)
        if not all(verdicts):
            shown = aid.hex().upper() or "(default application)"
            what = "" if exact or not listed else f" (a prefix of {len(listed)} listed AID(s))"
            raise UnauthorizedError(
                f"user {cn} may not select AID {shown}{what} on {seid}", CommandCode.APDU
            )

    def check_apdu(
        self, cn: str, seid: str, aid: bytes | None, apdu: bytes, *, continuation: bool = False
    ) -> None:
        """Raise unless the filters let *cn* send *apdu*.

        *continuation* marks a GET RESPONSE the server sends to fetch the rest
        of an answer it already admitted: a filter that matches it decides, as
        for any APDU, but no match lets it through whatever ``filter_default``
        says, so a deny-by-default table still gets long answers whole.
        """
        if self.require_select and aid is None:
            raise UnauthorizedError(f"select an application on {seid} first", CommandCode.APDU)
        for rule in self.filters:
            if rule.matches(cn, seid, aid, apdu):
                if rule.allow:
                    return
                break
        else:
            if self.filter_default_allow or continuation:
                return
        head = apdu[:4].hex().upper()
        raise UnauthorizedError(
            f"APDU {head}... is blocked by a filter on {seid}", CommandCode.APDU
        )


def load_serial_map(path: Path) -> dict[str, str]:
    """ReaderSN.txt / cardsn.txt: ``SERIAL SEID`` (a quoted reader name also works)."""
    out: dict[str, str] = {}
    for number, tok in _lines(path):
        if len(tok) < 2:
            raise ConfigError(f"{path}:{number}: expected 'SERIAL SEID'")
        out[tok[0].strip('"')] = tok[1]
    return out


def load_reader_names(path: Path) -> list[str]:
    """Reader.txt: one quoted reader name (or name prefix) per line."""
    return [" ".join(tok).strip('"') for _, tok in _lines(path)]


def load_atr_map(path: Path) -> list[tuple[bytes, bytes]]:
    """ATR.txt: ``ATR AID``; the ATR is a prefix, '|' separators are ignored."""
    out: list[tuple[bytes, bytes]] = []
    for number, tok in _lines(path):
        where = f"{path}:{number}"
        if len(tok) != 2:
            raise ConfigError(f"{where}: expected 'ATR AID'")
        out.append((_hex(tok[0].replace("|", ""), where), _hex(tok[1], where)))
    return out
