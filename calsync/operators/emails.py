"""The one place an operator's email address is normalised and checked.

Python and Postgres must never disagree about whether two addresses are the same operator.
Their lowercasing differs outside ASCII (`İ` is `i̇` to Python and `i` to Postgres, so `İnfo@`
and `info@` were two operators to the importer and one to a unique index on lower(email): a
crash). So Postgres no longer lowercases addresses at all: `key()` computes the comparison key
here, it is stored in operators.email_key (unique), and every lookup compares keys.

- `normalize`: NFKC (full-width letters become plain ones), surrounding whitespace removed, and refused
  when it holds an invisible character (zero-width space, joiners, soft hyphen, BOM, bidi marks,
  control characters), which would otherwise make a second, separate operator. The case the
  administrator wrote is kept for display and for Exchange.
- `key`: the normalised address, casefolded (Unicode's caseless matching).
"""

from __future__ import annotations

import unicodedata

from calsync.settings import EMAIL_RE

MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit; longer cannot be a mailbox
_INVISIBLE_CATEGORIES = frozenset({"Cf", "Cc", "Co", "Cn", "Zl", "Zp", "Zs"})


class BadEmail(ValueError):
    """str() says what is wrong with the address, for a message that names the line or argument."""


def _describe(ch: str) -> str:
    name = unicodedata.name(ch, "unnamed character")
    return f"U+{ord(ch):04X} {name}"


def normalize(raw: str) -> str:
    """The address as calsync stores it; BadEmail names what is wrong."""
    email = unicodedata.normalize("NFKC", raw).strip()
    if not email:
        raise BadEmail("missing email")
    for position, ch in enumerate(email, start=1):
        if ch != " " and unicodedata.category(ch) in _INVISIBLE_CATEGORIES:
            raise BadEmail(
                f"email {email!r} holds the invisible character {_describe(ch)} at position {position}; "
                "retype the address (it was probably pasted from a web page or a document)"
            )
    if len(email) > MAX_EMAIL_LENGTH or not EMAIL_RE.match(email):
        raise BadEmail(f"bad email {email!r}: not an email address like name@example.com")
    return email


def key(email: str) -> str:
    """What every address of the same operator shares (stored in operators.email_key)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", email).strip().casefold())
