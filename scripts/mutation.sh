#!/usr/bin/env bash
# Mutation testing of the pure cores with mutmut (config: [tool.mutmut] in pyproject.toml).
# Not part of the CI run: a full pass takes tens of minutes. One module at a time, with few
# workers, because the machine is shared:
#   bash scripts/mutation.sh                 # every core: cgroups histogram births analysis signal
#   bash scripts/mutation.sh core.histogram  # one core, by its module under kernel_gossip/
#   MUTATION_WORKERS=2 bash scripts/mutation.sh core.cgroups
# Then `.venv/bin/mutmut results` lists the survivors, `.venv/bin/mutmut show NAME` shows one.
# docs/mutation.md records the last figures and why each survivor is equivalent.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
workers="${MUTATION_WORKERS:-1}"
modules=("$@")
[ "${#modules[@]}" -gt 0 ] || modules=(core.cgroups core.histogram core.births operator.analysis schema.signal)
for module in "${modules[@]}"; do
    echo "[mutation] kernel_gossip/${module//.//}.py with $workers worker(s)"
    nice -n 10 .venv/bin/mutmut run --max-children "$workers" "kernel_gossip.$module.*"
done
.venv/bin/mutmut results
