#!/usr/bin/env bash
# What medconv runs on a lent GPU machine, in one call of under 9 minutes (see DESIGN.md):
#   1. speed, alone on the machine: BernoulliRBM epochs on CUDA, and the ISBI slice segmented by the naive
#      sliding window, exact dense scanning and the U-Net on CUDA (results/*_cuda.json);
#   2. then, at once on the one GPU: the published MedMNIST recipe in full (ResNet-18 (28), 100 epochs) on
#      PneumoniaMNIST for seeds 0-2 (2.5 h per seed on the CPUs here), and longer-training explorations
#      of the ISBI U-Net and the CRCHistoPhenotypes proximity U-Net (single seeds, scored on validation).
# The machine has no network: it uses its own python and torch (2.4+), imports medconv from src/ without
# installing, installs wheels carried in .whl/ (medmnist, for its INFO table), and reads data from
# $MEDCONV_DATA (medmnist/pneumoniamnist.npz, isbi2012_em/, crchistophenotypes/ copied into a carried
# folder). Everything small it wrote (results, bench.json, metrics, histories, logs; no weights) comes
# back as $OUT/gpu.tar.gz; unpack it in the repository root here. (results/medmnist_2d_cuda.* is that
# machine's partial report: ./run bench medmnist_2d --report-only here puts the reference runs in the table.)
#   MEDCONV_DATA=gpu-data benchmarks/gpu.sh          # GPU_TRAIN_SECONDS caps part 2 (default 400)
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH} MEDCONV_RESULTS_SUFFIX=_cuda PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}
LOGS=benchmarks/logs/gpu
EXPLORE=benchmarks/runs/gpu_explore
BUDGET=${GPU_TRAIN_SECONDS:-400}
mkdir -p "$LOGS" "$EXPLORE"
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl \
    && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
"$PY" -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0))" || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOGS/nvidia-smi.txt"

part() {  # part NAME SECONDS COMMAND...: run with a time limit, log to $LOGS/NAME.log, say how it ended
  local name=$1 seconds=$2; shift 2
  local tic=$SECONDS
  timeout "$seconds" "$@" >"$LOGS/$name.log" 2>&1
  echo "$name: exit $? after $((SECONDS - tic)) s" | tee -a "$LOGS/parts.txt"
}

# 1. speed, one at a time
part rbm_speed 120 "$PY" benchmarks/rbm_speed.py --epochs 3
part dense_vs_sliding 180 "$PY" benchmarks/dense_vs_sliding.py --device cuda

# 2. training, all at once (each process gets 2 CPU threads of the 16)
medconv() { "$PY" -m medconv.cli "$@"; }
export -f medconv; export PY
for seed in 0 1 2; do
  part "reference_seed$seed" "$BUDGET" "$PY" benchmarks/medmnist_2d.py --only pneumoniamnist:reference --seeds $seed --threads 2 &
done
UNET="--dataset isbi2012 --mode dense --arch unet --batch-size 8 --samples-per-epoch 400 --deterministic --threads 2
      --augment flips=1,rot90=1,elastic=4,intensity=0.05 --seed 0"
isbi() {  # isbi NAME OPTIONS...: train, then score validation and test with d4 test-time augmentation
  local out=$EXPLORE/$1; shift
  medconv segment train $UNET "$@" --out "$out" && for split in val test; do
    medconv segment evaluate "$out" --split $split --tta d4 --device cuda --json || return 1; done
}
export -f isbi; export UNET EXPLORE
part isbi_unet_e100 "$BUDGET" bash -c 'isbi isbi_unet_e100 --tile 128 --epochs 100' &
part isbi_unet_t256_e50 "$BUDGET" bash -c 'isbi isbi_unet_t256_e50 --tile 256 --epochs 50' &
CRC="--dataset crchistophenotypes --mode dense --arch unet --tile 128 --target proximity --radius 6
     --select-metric detection_f1 --samples-per-epoch 400 --batch-size 8 --tolerance 6 --deterministic --threads 2
     --augment flips=1,rot90=1,intensity=0.05 --seed 0"
for epochs in 40 80; do
  part "crc_r6_e$epochs" "$BUDGET" "$PY" -m medconv.cli detect train $CRC --epochs $epochs --out "$EXPLORE/crc_r6_e$epochs" &
done
wait

"$PY" benchmarks/gpu_explore.py >"$LOGS/gpu_explore.log" 2>&1  # results/gpu_explore.md: the explorations' table
RESULT=${OUT:-benchmarks/logs}/gpu.tar.gz
find benchmarks/results -name '*_cuda.*' -o -name 'gpu_explore.*' >/tmp/gpu_files
find benchmarks/runs/medmnist_2d/pneumoniamnist/reference-100ep "$EXPLORE" "$LOGS" -type f \
  \( -name '*.json' -o -name '*.csv' -o -name '*.log' -o -name '*.txt' \) >>/tmp/gpu_files
tar czf "$RESULT" -T /tmp/gpu_files && echo "wrote $RESULT ($(wc -l </tmp/gpu_files) files)"
cat "$LOGS/parts.txt"
