"""kernel-gossip: what the Linux kernel knows about your pods, measured with eBPF."""

__version__ = "0.1.0"
