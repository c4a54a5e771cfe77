from domainlm.units import format_duration, human_count


def test_human_count():
    assert human_count(1_234_567) == "1.23M"
    assert human_count(999) == "999"
    assert human_count(2_000_000_000) == "2B"
    assert human_count(13.5e9) == "13.5B" and human_count(1.4e12) == "1.4T"
    assert human_count(6_738_415_616, digits=4) == "6.738B"


def test_format_duration():
    assert [format_duration(s) for s in (0.4, 42, 187, 7260)] == ["0s", "42s", "3m07s", "2h01m"]
    assert format_duration(47 * 3600) == "47h00m"
    assert format_duration(30 * 86400) == "30.0 days"  # from two days on, days
