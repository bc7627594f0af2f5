# One image for the operator and the node agent (lab/manifests/): Debian's BCC
# (python3-bpfcc, built for Debian's python3) and kernel-gossip in a venv that sees it.
# BCC compiles its probes at start-up against the node's kernel headers, which the agent's
# DaemonSet mounts from the host (/lib/modules, /usr/src): none are baked in here.
#   docker build -t kernel-gossip:0.1.0 .
FROM debian:bookworm-slim

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates python3 python3-bpfcc python3-venv \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY bpf ./bpf
COPY kernel_gossip ./kernel_gossip
RUN python3 -m venv --system-site-packages /opt/kernel-gossip \
    && /opt/kernel-gossip/bin/pip install --no-cache-dir /src \
    && /opt/kernel-gossip/bin/python -c "import bcc, kernel_gossip" \
    && rm -rf /src

ENV PATH=/opt/kernel-gossip/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
# The operator's user (its Deployment runs as 65532, non-root, read-only root filesystem);
# the agent's DaemonSet runs as root with CAP_BPF and CAP_PERFMON only.
RUN groupadd --system --gid 65532 kernel-gossip \
    && useradd --system --uid 65532 --gid 65532 --no-create-home --shell /usr/sbin/nologin kernel-gossip
USER 65532
WORKDIR /
CMD ["kernel-gossip", "--help"]
