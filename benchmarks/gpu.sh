#!/usr/bin/env bash
# Speed benchmarks on CUDA, under 5 minutes, for a lent GPU machine (see DESIGN.md). That machine
# has no network: it uses its own python and torch (2.4+), imports medconv from src/ without
# installing (it needs numpy, scikit-learn, safetensors, pyyaml and rich beside torch), and reads data
# from $MEDCONV_DATA (carry a folder with medmnist/pneumoniamnist.npz). Not yet run on a GPU.
#   MEDCONV_DATA=gpu-data benchmarks/gpu.sh
# Results land in benchmarks/results/*.json as on the CPU; copy them out of the machine's $OUT.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} MEDCONV_RESULTS_SUFFIX=_cuda
PY=${PYTHON:-python3}
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))"
"$PY" benchmarks/rbm_speed.py --epochs 3
"$PY" benchmarks/inspect_speed.py --repeats 5
# needs monai and the isbi2012_em folder in $MEDCONV_DATA
"$PY" benchmarks/dense_vs_sliding.py --device cuda || echo "dense_vs_sliding skipped (monai or ISBI data missing?)"
if [[ -n ${OUT:-} ]]; then cp benchmarks/results/*_cuda.* "$OUT"/; fi
