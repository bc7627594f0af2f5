#!/usr/bin/env bash
# The test command: set-up, then lint, type-check and the whole test suite.
# Extra arguments go to pytest (e.g. scripts/check.sh -k observe).
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$repo/scripts/setup.sh"
cd "$repo"
bin="$repo/.venv/bin"
echo "[check] ruff"
"$bin/ruff" check .
"$bin/ruff" format --check .
echo "[check] actionlint .github/workflows/"
"$bin/actionlint" .github/workflows/*.yml
echo "[check] import-linter: the pipeline's layers"
"$bin/lint-imports"
echo "[check] mypy kernel_gossip/"
"$bin/mypy" kernel_gossip/
echo "[check] pytest"
"$bin/pytest" "$@"
