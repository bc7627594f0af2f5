"""Kubernetes' name rules (RFC 1123 labels and subdomains): one definition for the
webhook's payloads, the scenario specs and the lab kubelet's pod specs."""

import re
from typing import Annotated

from pydantic import StringConstraints

DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
MAX_LABEL = 63
MAX_NAME = 253
"""A subdomain's length limit: the longest name of most objects (pods, nodes, CRs)."""

DnsLabel = Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL, pattern=DNS_LABEL)]
"""Namespaces, container names, runtime names."""
DnsSubdomain = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_NAME, pattern=DNS_SUBDOMAIN)
]
"""Pod and node names."""


def is_dns_label(name: str) -> bool:
    return len(name) <= MAX_LABEL and re.fullmatch(DNS_LABEL, name) is not None


def is_dns_subdomain(name: str) -> bool:
    return len(name) <= MAX_NAME and re.fullmatch(DNS_SUBDOMAIN, name) is not None
