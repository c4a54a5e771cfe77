"""Counts and durations as people read them (13.5B tokens, 3m07s, 12.5 days): one format for every table.

Below every stage (imports nothing from domainlm); parsing "7B" / "1.4T" back to a number is
`domainlm.config.parse_count`.
"""

from __future__ import annotations

_SUFFIXES = ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K"))
_DAYS_FROM_SECONDS = 48 * 3600  # from two days on, runs are planned and read in days


def human_count(value: float, digits: int = 3) -> str:
    """1_234_567 -> '1.23M', 13e9 -> '13B', 999 -> '999': decimal suffixes, as token and parameter
    counts are quoted; `digits` significant digits."""
    for scale, suffix in _SUFFIXES:
        if abs(value) >= scale:
            return f"{value / scale:.{digits}g}{suffix}"
    return f"{value:.{max(digits, 4)}g}"


def format_duration(seconds: float) -> str:
    """42s, 3m07s, 5h12m; 12.5 days from two days on."""
    if seconds >= _DAYS_FROM_SECONDS:
        return f"{seconds / 86400:,.1f} days"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"
