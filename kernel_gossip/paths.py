"""Where kernel-gossip finds its BPF sources and keeps caches and lab state."""

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent


def bpf_source(name: str) -> Path:
    """A BPF C program: kernel_gossip/bpf/ in a wheel, bpf/ in a checkout."""
    for folder in (PACKAGE_DIR / "bpf", REPO_DIR / "bpf"):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"BPF program {name} not found beside the package")


def cache_dir() -> Path:
    """Machine-wide cache for downloads and builds, shared by every clone."""
    default = Path.home() / ".cache" / "kernel-gossip"
    return Path(os.environ.get("KERNEL_GOSSIP_CACHE", default))


def lab_dir() -> Path:
    """Per-checkout lab state (ignored by git)."""
    return Path(os.environ.get("KERNEL_GOSSIP_LAB_DIR", REPO_DIR / ".lab"))
