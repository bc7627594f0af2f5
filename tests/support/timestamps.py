"""Kubernetes timestamps as times: compared as strings, "...05Z" sorts after "...05.1Z"."""

from datetime import datetime


def parse_time(text: str) -> float:
    """An RFC 3339 time (whole seconds or fractional, Z or an offset) in seconds."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
