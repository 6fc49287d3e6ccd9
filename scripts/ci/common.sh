# Sourced by every CI script: the project's pinned environment, then its tools on PATH.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
make --no-print-directory install >/dev/null
export PATH="$PWD/.venv/bin:$PATH"
