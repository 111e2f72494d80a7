"""Names, label keys and label values parsed as apimachinery parses them, into types of their own.

A name a tenant writes (an object's ``metadata.name``, a ``generateName``, a connection Secret's
``writeConnectionSecretToRef.name``) later becomes a URL path segment, a label value or a
selector term in one of two clusters. It is checked once at the edge with apimachinery's rules
and wording (``k8s.io/apimachinery/pkg/util/validation``, ``pkg/api/validation``) and carried
inward as a ``SecretName`` or ``ObjectName``, which only the parsers here make; code that uses a
name (the connection Secret copies) takes those types and parses a stored value again.

Go's ``len`` counts bytes and its ``$`` ends the text (Python's also matches before a final
newline): both are kept here as Go has them. Pure.
"""

from __future__ import annotations

import re
from typing import NewType

DNS1123_SUBDOMAIN_MAX = 253
DNS1123_LABEL_MAX = 63
LABEL_VALUE_MAX = 63
LABEL_KEY_NAME_MAX = 63

_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(_DNS1123_LABEL_FMT)
_DNS1123_SUBDOMAIN_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUBDOMAIN = re.compile(_DNS1123_SUBDOMAIN_FMT)
_DNS1123_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character"
)
_DNS1123_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character"
)
_LABEL_KEY_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_KEY = re.compile(_LABEL_KEY_FMT)
_LABEL_KEY_MSG = (
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
)
_LABEL_VALUE_FMT = f"({_LABEL_KEY_FMT})?"
_LABEL_VALUE = re.compile(_LABEL_VALUE_FMT)
_LABEL_VALUE_MSG = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
    "and must start and end with an alphanumeric character"
)

#: A DNS-1123 subdomain that names a Secret (a connection Secret, its copy): made only by ``parse_secret_name``.
SecretName = NewType("SecretName", str)
#: A DNS-1123 subdomain naming an object or a namespace: made only by ``parse_object_name``.
ObjectName = NewType("ObjectName", str)


class InvalidName(ValueError):
    """A value that is not a valid name, with apimachinery's messages (one per rule broken)."""

    def __init__(self, value: str, messages: list[str]) -> None:
        super().__init__(f"{value!r}: {'; '.join(messages)}")
        self.value = value
        self.messages = messages


def _size(value: str) -> int:
    return len(value.encode("utf-8", "surrogatepass"))


def _max_len(length: int) -> str:
    return f"must be no more than {length} characters"


def _regex_error(message: str, fmt: str, *examples: str) -> str:
    """apimachinery's RegexError wording."""
    if not examples:
        return f"{message} (regex used for validation is '{fmt}')"
    shown = " or ".join(f"'{e}'" for e in examples)
    return f"{message} (e.g. {shown}, regex used for validation is '{fmt}')"


def dns1123_subdomain(value: str) -> list[str]:
    """What IsDNS1123Subdomain says of ``value`` (empty when valid)."""
    problems = []
    if _size(value) > DNS1123_SUBDOMAIN_MAX:
        problems.append(_max_len(DNS1123_SUBDOMAIN_MAX))
    if not _DNS1123_SUBDOMAIN.fullmatch(value):
        problems.append(_regex_error(_DNS1123_SUBDOMAIN_MSG, _DNS1123_SUBDOMAIN_FMT, "example.com"))
    return problems


def dns1123_label(value: str) -> list[str]:
    """What IsDNS1123Label says of ``value`` (empty when valid)."""
    problems = []
    if _size(value) > DNS1123_LABEL_MAX:
        problems.append(_max_len(DNS1123_LABEL_MAX))
    if not _DNS1123_LABEL.fullmatch(value):
        if _DNS1123_SUBDOMAIN.fullmatch(value):
            problems.append("must not contain dots")
        else:
            problems.append(_regex_error(_DNS1123_LABEL_MSG, _DNS1123_LABEL_FMT, "my-name", "123-abc"))
    return problems


def _mask_trailing_dash(name: str) -> str:
    """apimachinery's maskTrailingDash, byte for byte (it drops two characters, not one)."""
    if len(name) > 1 and name.endswith("-"):
        return name[:-2] + "a"
    return name


def name_is_dns_subdomain(name: str, *, prefix: bool = False) -> list[str]:
    """NameIsDNSSubdomain: an object name, or (``prefix``) a ``generateName`` whose trailing '-' is allowed."""
    return dns1123_subdomain(_mask_trailing_dash(name) if prefix else name)


def label_value(value: str) -> list[str]:
    """What IsValidLabelValue says of ``value`` (empty when valid)."""
    problems = []
    if _size(value) > LABEL_VALUE_MAX:
        problems.append(_max_len(LABEL_VALUE_MAX))
    if not _LABEL_VALUE.fullmatch(value):
        problems.append(_regex_error(_LABEL_VALUE_MSG, _LABEL_VALUE_FMT, "MyValue", "my_value", "12345"))
    return problems


def label_key(value: str) -> list[str]:
    """What IsQualifiedName says of a label key (empty when valid)."""
    problems: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            problems.append("prefix part must be non-empty")
        else:
            problems += [f"prefix part {m}" for m in dns1123_subdomain(prefix)]
    else:
        return [
            "a valid label key "
            + _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc")
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"
        ]
    if not name:
        problems.append("name part must be non-empty")
    elif _size(name) > LABEL_KEY_NAME_MAX:
        problems.append(f"name part {_max_len(LABEL_KEY_NAME_MAX)}")
    if not _LABEL_KEY.fullmatch(name):
        problems.append("name part " + _regex_error(_LABEL_KEY_MSG, _LABEL_KEY_FMT, "MyName", "my.name", "123-abc"))
    return problems


def parse_secret_name(value: object) -> SecretName:
    """``value`` as a Secret name (a DNS-1123 subdomain), or InvalidName."""
    if not isinstance(value, str):
        raise InvalidName(repr(value), ["must be a string"])
    problems = dns1123_subdomain(value)
    if problems:
        raise InvalidName(value, problems)
    return SecretName(value)


def parse_object_name(value: object) -> ObjectName:
    """``value`` as an object or namespace name (a DNS-1123 subdomain), or InvalidName."""
    if not isinstance(value, str):
        raise InvalidName(repr(value), ["must be a string"])
    problems = dns1123_subdomain(value)
    if problems:
        raise InvalidName(value, problems)
    return ObjectName(value)
