#!/usr/bin/env bash
# Run the workflow (default: the embedded config on all cores). Extra arguments go to snakemake.
set -euo pipefail
cd "$(dirname "$0")"
source tools/venv.sh
cores=(--cores all)
for arg in "$@"; do
  case "$arg" in --cores* | -c* | --jobs* | -j* | --profile* | --workflow-profile*) cores=() ;; esac
done
exec snakemake "${cores[@]}" "$@"
