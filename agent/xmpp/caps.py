"""XEP-0115 Entity Capabilities: the `ver` string computed from our disco#info.

Pure functions, no I/O. The agent publishes the result in its XEP-0174 TXT record
(`node`, `ver`, `hash`) so peers can cache what we support without asking.

The algorithm (XEP-0115 §5.1), in short: sort identities by category, type and xml:lang and
append `category/type/lang/name<` for each; sort features and append `feature<` for each; then
for each XEP-0128 extended form, sorted by FORM_TYPE, append `FORM_TYPE<` and, for each field
sorted by var, `var<` followed by its sorted values, each ending in `<`. Hash the UTF-8 bytes of
that string and encode the digest in base64.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from typing import NamedTuple

#: The hash function names from the IANA "Hash Function Textual Names" registry that XEP-0115
#: peers understand, mapped to their hashlib names. sha-1 is what every XEP-0115 peer supports.
HASH_FUNCTIONS: Mapping[str, str] = {
    "sha-1": "sha1",
    "sha-224": "sha224",
    "sha-256": "sha256",
    "sha-384": "sha384",
    "sha-512": "sha512",
}

FORM_TYPE = "FORM_TYPE"


class Identity(NamedTuple):
    """A XEP-0030 <identity/>; empty `lang`/`name` mean the attribute is absent."""

    category: str
    type: str
    lang: str = ""
    name: str = ""


#: A XEP-0128 extended disco#info form: field var → its values (FORM_TYPE included).
Form = Mapping[str, Sequence[str]]


class CapsError(ValueError):
    """The disco#info data cannot produce a well-defined ver string (XEP-0115 §5.4)."""


def verification_string(
    identities: Iterable[tuple[str, str, str, str]],
    features: Iterable[str],
    forms: Iterable[Form] = (),
) -> str:
    """Build the XEP-0115 §5.1 string S, before hashing.

    `identities` are (category, type, lang, name) tuples. Duplicate identities or features,
    or forms without a single FORM_TYPE, are rejected as §5.4 says a receiver must treat
    them as ill-formed.
    """
    parts: list[str] = []
    identity_list = [Identity(*identity) for identity in identities]
    _reject_duplicates("identity", identity_list)
    for identity in sorted(identity_list, key=lambda i: (i.category, i.type, i.lang)):
        parts.append(f"{identity.category}/{identity.type}/{identity.lang}/{identity.name}<")

    feature_list = list(features)
    _reject_duplicates("feature", feature_list)
    parts.extend(f"{feature}<" for feature in sorted(feature_list))

    typed_forms = [(_form_type(form), form) for form in forms]
    _reject_duplicates("FORM_TYPE", [form_type for form_type, _ in typed_forms])
    for form_type, form in sorted(typed_forms, key=lambda pair: pair[0]):
        parts.append(f"{form_type}<")
        for var in sorted(var for var in form if var != FORM_TYPE):
            parts.append(f"{var}<")
            parts.extend(f"{value}<" for value in sorted(form[var]))
    return "".join(parts)


def caps_ver(
    identities: Iterable[tuple[str, str, str, str]],
    features: Iterable[str],
    forms: Iterable[Form] = (),
    *,
    hash: str = "sha-1",
) -> str:
    """The XEP-0115 `ver` attribute: base64 of the hash of `verification_string(...)`."""
    try:
        algorithm = HASH_FUNCTIONS[hash]
    except KeyError:
        known = ", ".join(HASH_FUNCTIONS)
        raise CapsError(f"unknown caps hash function {hash!r} (known: {known})") from None
    digest = hashlib.new(algorithm, verification_string(identities, features, forms).encode())
    return base64.b64encode(digest.digest()).decode("ascii")


def _form_type(form: Form) -> str:
    values = form.get(FORM_TYPE)
    if not values or len(set(values)) != 1:
        raise CapsError(f"an extended disco#info form needs exactly one FORM_TYPE value: {form!r}")
    return values[0]


def _reject_duplicates(what: str, items: Sequence[object]) -> None:
    seen: set[object] = set()
    for item in items:
        if item in seen:
            raise CapsError(f"duplicate {what} {item!r} in disco#info (XEP-0115 §5.4)")
        seen.add(item)
