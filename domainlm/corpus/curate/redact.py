"""Document text -> text with emails, phone numbers and IP addresses replaced by placeholders."""

from __future__ import annotations

import ipaddress
import re

from domainlm.corpus.curate.config import RedactConfig

EMAIL_TOKEN = "<EMAIL>"
PHONE_TOKEN = "<PHONE>"
IP_TOKEN = "<IP_ADDRESS>"

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
# Separators are required (and must agree) so that account numbers, ICD codes, years and clause
# numbers such as "DFAR 252.227-7015" are left alone: (555) 123-4567, 555-123-4567,
# 555.123.4567, +1 555 123 4567, +44 20 7946 0958.
_PHONE = re.compile(
    r"(?<![\w+.-])(?:"
    r"(?:\+?1[ .-]?)?\(\d{3}\)[ .-]?\d{3}[ .-]\d{4}"
    r"|(?:\+?1([ .-]))?\d{3}([ .-])\d{3}\2\d{4}"
    r"|\+\d{1,3}(?:[ .-]\d{1,4}){2,5}"
    r")(?![\w-])"
)
# Candidates only; ipaddress decides, so '10:30' or 'ff:ee' are not taken for IPv6.
_IPV4 = re.compile(r"(?<![\w.])\d{1,3}(?:\.\d{1,3}){3}(?![\w.]|\.\d)")
_IPV6 = re.compile(r"(?<![\w:])[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?![\w:])")


# Dotted quads that are not addresses: enzyme numbers (EC 2.7.3.2) and versions (v1.2.3.4).
_NOT_AN_IP_BEFORE = re.compile(r"(?:\bE\.? ?C|\bversion|\bver|\bv|\brelease|\brev)\.?:?\s*$", re.IGNORECASE)


def _valid_ip(candidate: str) -> bool:
    if candidate.count(":") and "::" not in candidate and candidate.count(":") != 7:
        return False  # short colon groups such as times are not addresses
    try:
        ipaddress.ip_address(candidate)
    except ValueError:
        return False
    return True


class Redactor:
    """Counts what it replaces, per kind, so the report can say how much personal data was found."""

    def __init__(self, config: RedactConfig) -> None:
        self.config = config

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        counts = {"emails": 0, "phones": 0, "ip_addresses": 0}
        if not self.config.enabled:
            return text, counts
        if self.config.emails:
            text, counts["emails"] = _EMAIL.subn(EMAIL_TOKEN, text)
        if self.config.ip_addresses:
            text, counts["ip_addresses"] = _replace_ips(text)
        if self.config.phones:
            text, counts["phones"] = _PHONE.subn(PHONE_TOKEN, text)
        return text, counts


def _replace_ips(text: str) -> tuple[str, int]:
    found = 0

    def swap(match: re.Match[str]) -> str:
        nonlocal found
        before = match.string[max(0, match.start() - 12) : match.start()]
        if _valid_ip(match.group(0)) and not _NOT_AN_IP_BEFORE.search(before):
            found += 1
            return IP_TOKEN
        return match.group(0)

    text = _IPV4.sub(swap, text)
    text = _IPV6.sub(swap, text)
    return text, found
