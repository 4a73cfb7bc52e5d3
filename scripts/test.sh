#!/usr/bin/env bash
# Install, then run the test suite (tiny local models only; no downloads, no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
python3 -m pytest -q "$@"
