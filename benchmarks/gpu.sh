#!/usr/bin/env bash
# What medconv runs on a lent GPU machine, in one call of under 9 minutes:
#   1. speed, alone on the machine: BernoulliRBM epochs on CUDA, and the ISBI slice segmented by the naive
#      sliding window, exact dense scanning and the U-Net on CUDA (results/*_cuda.json);
#   2. then, at once on the one GPU: the published MedMNIST recipe in full (ResNet-18 (28), 100 epochs) on
#      PneumoniaMNIST for seeds 0-2 (2.5 h per seed on the CPUs here), and longer-training explorations
#      of the ISBI U-Net and the CRCHistoPhenotypes proximity U-Net (single seeds, scored on validation only:
#      explorations never score the test images).
# The machine has no network: it uses its own python and torch (2.4+), imports medconv from src/ without
# installing, installs wheels carried in .whl/ (medmnist, for its INFO table), and reads data from
# $MEDCONV_DATA (medmnist/pneumoniamnist.npz, isbi2012_em/, crchistophenotypes/ copied into a carried
# folder). Everything small it wrote (results, bench.json, metrics, histories, logs; no weights) comes
# back as $OUT/gpu.tar.gz; unpack it in the repository root here. (results/medmnist_2d_cuda.* is that
# machine's partial report: ./run bench medmnist_2d --report-only here puts the reference runs in the table.)
#   MEDCONV_DATA=gpu-data GPU_PARTS="speed explore" benchmarks/gpu.sh    # GPU_TRAIN_SECONDS caps part 2 (400)
#   MEDCONV_DATA=gpu-data GPU_PARTS=wsi benchmarks/gpu.sh     # the 40,960 px whole slide (issue 24), alone: its
#      slide is written there (67 s on 2 CPU cores), then segment and detect predict over it (on 2 CPU cores,
#      2026-12-06: 58 min per verb over the 4,074 tissue tiles, 1.2 tiles/s, results/wsi.md; on the GPU
#      unmeasured, so 480 s may not be enough); results/wsi_cuda.* come back (needs crchistophenotypes/ in
#      gpu-data)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} MEDCONV_RESULTS_SUFFIX=_cuda PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
LOGS=benchmarks/logs/gpu
EXPLORE=benchmarks/runs/gpu_explore
BUDGET=${GPU_TRAIN_SECONDS:-400}
PARTS=${GPU_PARTS:-explore}  # any of: speed reference explore (the first sitting ran all three)
mkdir -p "$LOGS" "$EXPLORE"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOGS/nvidia-smi.txt"
# where this sitting's rows come from (the machine has no git: pass MEDCONV_COMMIT=<hash> with the command)
"$PY" -c "import json, os, sys; sys.path.insert(0, 'benchmarks'); from common import provenance
print(json.dumps({**provenance(), 'command': 'GPU_PARTS=\"$PARTS\" benchmarks/gpu.sh'}))" >"$LOGS/provenance.json"

part() {  # part NAME SECONDS COMMAND...: run with a time limit, log to $LOGS/NAME.log, say how it ended
  local name=$1 seconds=$2; shift 2
  local tic=$SECONDS
  timeout "$seconds" "$@" >"$LOGS/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - tic)) s" | tee -a "$LOGS/parts.txt"
}

has() { [[ " $PARTS " == *" $1 "* ]]; }

# 1. speed, one at a time, alone on the machine
if has speed; then
  part rbm_speed 120 "$PY" benchmarks/rbm_speed.py --epochs 3
  part dense_vs_sliding 180 "$PY" benchmarks/dense_vs_sliding.py --device cuda
fi

if has wsi; then
  # TF32 off (cuDNN's convolutions use it by default): the seam check compares maps to 1e-5, and TF32 alone
  # differs by about 1e-3 between the slide's tiles and the whole-image windows
  NVIDIA_TF32_OVERRIDE=0 part wsi "${GPU_WSI_SECONDS:-480}" "$PY" benchmarks/wsi.py
fi

# 2. training, all at once (each process gets 2 CPU threads of the 16)
medconv() { "$PY" -m medconv.cli "$@"; }
export -f medconv; export PY
if has reference; then
  for seed in 0 1 2; do
    part "reference_seed$seed" "$BUDGET" "$PY" benchmarks/medmnist_2d.py --only pneumoniamnist:reference --seeds $seed --threads 2 &
  done
fi
UNET="--dataset isbi2012 --mode dense --arch unet --batch-size 8 --samples-per-epoch 400 --deterministic --threads 2
      --augment flips=1,rot90=1,elastic=4,intensity=0.05 --tile 128"
HALF="--model-option features=16,16,32,64,128,16"
isbi() {  # isbi NAME OPTIONS...: train, then score validation with d4 test-time augmentation (an exploration
  local out=$EXPLORE/$1; shift  # never scores the test slices: --no-test)
  medconv segment train $UNET "$@" --no-test --out "$out" &&
    medconv segment evaluate "$out" --split val --tta d4 --device cuda --json
}
export -f isbi; export UNET HALF EXPLORE
CRC="--dataset crchistophenotypes --mode dense --arch unet --tile 128 --target proximity --radius 6
     --select-metric detection_f1 --samples-per-epoch 400 --batch-size 8 --tolerance 6 --deterministic --threads 2
     --augment flips=1,rot90=1,intensity=0.05 --seed 0"
if has explore; then  # the second sitting's list (the first's runs are in results/gpu_explore.md)
  for seed in 0 1 2; do  # the half-width U-Net at what 2 CPU cores train in under 30 minutes
    part "isbi_unet_half_e60_seed$seed" "$BUDGET" bash -c "isbi isbi_unet_half_e60_seed$seed \$HALF --epochs 60 --seed $seed" &
  done
  part isbi_unet_half_e150 "$BUDGET" bash -c 'isbi isbi_unet_half_e150 $HALF --epochs 150 --seed 0' &
  part crc_r6_half_e80 "$BUDGET" "$PY" -m medconv.cli detect train $CRC $HALF --epochs 80 --no-test --out "$EXPLORE/crc_r6_half_e80" &
fi
wait

"$PY" benchmarks/gpu_explore.py >"$LOGS/gpu_explore.log" 2>&1  # results/gpu_explore.md: the explorations' table
RESULT=${OUT:-benchmarks/logs}/gpu.tar.gz
find benchmarks/results -name '*_cuda.*' -o -name 'gpu_explore.*' >/tmp/gpu_files
find benchmarks/runs/medmnist_2d/pneumoniamnist/reference-100ep "$EXPLORE" "$LOGS" -type f \
  \( -name '*.json' -o -name '*.csv' -o -name '*.log' -o -name '*.txt' \) >>/tmp/gpu_files
tar czf "$RESULT" -T /tmp/gpu_files && echo "wrote $RESULT ($(wc -l </tmp/gpu_files) files)"
cat "$LOGS/parts.txt"
