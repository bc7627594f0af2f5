"""The Python side of bpf/*.c: the run-queue and births probes, and `observe` on top of them."""
