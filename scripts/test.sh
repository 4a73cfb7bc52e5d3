#!/usr/bin/env bash
# Install, then run the test suite (tiny local models only; no downloads, no GPU).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
# two test processes (pytest-xdist): about 14 minutes on 2 CPU cores; S3FT_TEST_WORKERS=0 runs them in one
python3 -m pytest -q -n "${S3FT_TEST_WORKERS:-2}" "$@"
