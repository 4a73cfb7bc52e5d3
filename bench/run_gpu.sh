#!/usr/bin/env bash
# The speed benchmarks on a GPU, one after another, each into bench/results/NAME[_DTYPE]_cuda.json
# (+ .md): the machine's roofline, generation (s3ft generate vs a naive loop), training (s3ft train
# vs a plain TRL script) and the pipeline cost; then vLLM vs hf where vLLM is installed. The CPU
# results stay where they are. About 10 minutes on one H200 for the embedded 135M model (estimate).
#     bash bench/run_gpu.sh            # DEVICE=cuda:1 bash bench/run_gpu.sh for another GPU
set -euo pipefail
cd "$(dirname "$0")/.."
D=${DEVICE:-cuda}
python3 -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'no GPU visible to torch')"
python3 bench/roofline.py --device "$D"
python3 bench/generation_speed.py --device "$D"
python3 bench/train_speed.py --device "$D" --arms trl-lora,s3ft-lora,trl-full,s3ft-full
python3 bench/pipeline_cost.py --device "$D"
if python3 -c "import vllm" 2>/dev/null; then
  python3 bench/vllm_backend.py --out bench/results/vllm_backend_cuda.json
else
  echo "vllm is not installed (pip install 's3ft[vllm]'): vLLM vs hf skipped"
fi
