"""I/O on this node: cgroupfs (the only cgroup I/O), BPF loading, OCI bundles, workloads, tokens."""
