# Sourced by run.sh and test.sh: create .venv/ from PyPI when it is missing or older than pyproject.toml.
# The default path needs no conda: snakemake runs every rule in this environment.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.quantscan-installed"
if [[ ! -f "$STAMP" || "$ROOT/pyproject.toml" -nt "$STAMP" ]]; then
  PY="${PYTHON:-python3}"
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || {
    echo "quantscan needs Python >= 3.11 (found $("$PY" --version 2>&1)); set PYTHON=/path/to/python3.11" >&2
    exit 1
  }
  echo "Setting up $VENV (first run only) ..." >&2
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  if ! "$VENV/bin/python" -c 'import torch' 2>/dev/null; then
    # A CPU-only wheel (about 200 MB) when the machine offers one; PyPI's default build (with CUDA
    # libraries, about 5.7 GB) otherwise.
    "$VENV/bin/python" -m pip install -q 'torch==2.13.0+cpu' 2>/dev/null ||
      "$VENV/bin/python" -m pip install -q 'torch>=2.9'
  fi
  "$VENV/bin/python" -m pip install -q -e "$ROOT[workflow,dev]"
  touch "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
