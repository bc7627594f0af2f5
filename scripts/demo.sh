#!/usr/bin/env bash
# The main job: set-up, then the local lab with the talk's demo workload (lab.yml, provider
# local), ending with the demo pods' KernelWhisper and PodBirthCertificate.
# Extra arguments go to ansible-playbook (e.g. -e state=absent to tear the lab down).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
cd "$repo"
exec "$repo/.venv/bin/ansible-playbook" lab.yml "$@"
