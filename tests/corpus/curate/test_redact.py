from domainlm.corpus.curate.config import RedactConfig
from domainlm.corpus.curate.redact import Redactor


def _redact(text, **flags):
    return Redactor(RedactConfig(enabled=True, **flags)).redact(text)


def test_emails_phones_and_ips_replaced_and_counted():
    text = (
        "Write to jane.doe+law@example.co.uk or call (555) 123-4567, +1 555 123 4567 or "
        "+44 20 7946 0958. Server 192.168.10.254 and 2001:db8::8a2e:370:7334 logged it."
    )
    out, counts = _redact(text)
    assert out == (
        "Write to <EMAIL> or call <PHONE>, <PHONE> or <PHONE>. Server <IP_ADDRESS> and <IP_ADDRESS> logged it."
    )
    assert counts == {"emails": 1, "phones": 3, "ip_addresses": 2}


def test_codes_dates_times_and_amounts_left_alone():
    text = (
        "B10.81 at 10:30 on 2005-12-20, version 1.2.3, account 1234567890, $1,234.56, 999.1.1.1, "
        "DFAR 252.227-7015, 48 C.F.R. 252.227-7014(a), kinase (EC 2.7.3.2), Version: 2.1.8.7-current"
    )
    out, counts = _redact(text)
    assert out == text
    assert counts == {"emails": 0, "phones": 0, "ip_addresses": 0}


def test_kinds_can_be_switched_off():
    out, counts = _redact("a@b.org 10.0.0.1 555-123-4567", emails=False, phones=False)
    assert out == "a@b.org <IP_ADDRESS> 555-123-4567"
    assert counts["ip_addresses"] == 1


def test_disabled_changes_nothing():
    text = "mail a@b.org"
    assert Redactor(RedactConfig()).redact(text) == (text, {"emails": 0, "phones": 0, "ip_addresses": 0})
