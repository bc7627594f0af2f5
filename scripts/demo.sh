#!/usr/bin/env bash
# The main job: set-up, then the host demo (a CPU-limited bursty workload, its
# dashboard-style average next to the kernel's truth, then clean-up).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
exec "$repo/.venv/bin/kernel-gossip" demo "$@"
