#!/usr/bin/env bash
# Run the test suite (unit tests and the end-to-end workflow test). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")"
source tools/venv.sh
exec python -m pytest "$@"
