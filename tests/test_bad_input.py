"""The bad-input table (issue 21): every verb, run in-process with a bad value per option, a missing or broken
input, a bad configuration file, a broken run directory or a bad --out, ends with exit code 2 and one line on
stderr ("medconv VERB: error: ..."), no traceback, and nothing written: the test's own folder (the working
directory of the command, where every --out points) stays empty, and the shared runs and files stay as they were.

The table grows with every bug found: add a row (case id, command line, words the message must hold). Command
lines are shell words with {placeholders}: {out} a folder that must not come to exist, {tmp} the test's folder,
and the runs and files the module fixture makes (see `made`). The runs are written directly (a tiny network saved
as a checkpoint with its metadata), not trained, so the whole table runs in seconds.
"""
from __future__ import annotations

import json
import shlex
import shutil
from pathlib import Path

import nibabel as nib
import tifffile
import numpy as np
import pytest
from PIL import Image
from safetensors.numpy import save_file

from conftest import run_in_process
from pydicom.uid import generate_uid
from test_image_io import ct_slice
from medconv.config import TrainConfig, load_config
from medconv.errors import UserError
from medconv.infer.onnx_maps import checkpoint_stamp
from medconv.segment.config import SegmentConfig

TINY = "--arch simple-cnn --model-option widths=[4] --model-option hidden=[8] --epochs 1"
SYN = f"train --dataset synthetic {TINY} --out {{out}}"  # a training command line that is fine as it stands
ARCH = "train --dataset synthetic --epochs 1 --out {out} --arch"  # ... where the case names the architecture
SEG = "segment train --dataset isbi2012 --patch 15 --epochs 1 --samples-per-epoch 64 --out {out}"
DET = "detect train --dataset crchistophenotypes --patch 15 --epochs 1 --samples-per-epoch 64 --out {out}"
TRANSFER = "transfer fit --backbone simple-cnn --dataset synthetic --cache {tmp}/cache --out {out}"

YAML = {  # --config files: name -> text
    "milestones_abc": "milestones: abc\n",
    "model_options_str": "model_options: widths=[4]\n",
    "model_options_banana": "model_options: {widths: banana}\n",
    "epochs_text": "epochs: ten\n",
    "epochs_float": "epochs: 2.5\n",
    "lr_nan": "lr: .nan\n",
    "lr_bool": "lr: true\n",
    "seed_negative": "seed: -1\n",
    "unknown_key": "epochs: 1\nlearning_rate: 0.1\n",
    "a_list": "- epochs\n- 1\n",
    "bad_yaml": "epochs: [1, 2\n",
    "tile_text": "mode: dense\ntile: \"32\"\n",
    "classes_number": "classes: 3\n",
    "radius_text": "radius: wide\n",
    "milestones_strings": "milestones: [a, b]\n",
    "channels_two": "channels: 2\n",
    "device_list": "device: [cpu]\n",
}

CASES = [
    # ------------------------------------------------------------------ train: numbers out of range or not numbers
    ("train-epochs-0", f"{SYN} --epochs 0", "--epochs"),
    ("train-epochs-negative", f"{SYN} --epochs -3", "--epochs"),
    ("train-epochs-text", f"{SYN} --epochs ten", "--epochs"),
    ("train-epochs-float", f"{SYN} --epochs 1.5", "--epochs"),
    ("train-lr-0", f"{SYN} --lr 0", "--lr"),
    ("train-lr-negative", f"{SYN} --lr -0.1", "--lr"),
    ("train-lr-nan", f"{SYN} --lr nan", "--lr"),
    ("train-lr-inf", f"{SYN} --lr inf", "--lr"),
    ("train-lr-text", f"{SYN} --lr fast", "--lr"),
    ("train-weight-decay-negative", f"{SYN} --weight-decay=-1e-4", "--weight-decay"),
    ("train-weight-decay-negative-exponent", f"{SYN} --weight-decay -1e-4", "--weight-decay"),
    ("train-lr-minus-inf", f"{SYN} --lr -inf", "--lr"),
    ("train-weight-decay-nan", f"{SYN} --weight-decay nan", "--weight-decay"),
    ("train-momentum-1", f"{SYN} --momentum 1", "--momentum"),
    ("train-momentum-negative", f"{SYN} --momentum -0.5", "--momentum"),
    ("train-momentum-nan", f"{SYN} --momentum nan", "--momentum"),
    ("train-gamma-0", f"{SYN} --gamma 0", "--gamma"),
    ("train-gamma-inf", f"{SYN} --gamma inf", "--gamma"),
    ("train-warmup-negative", f"{SYN} --warmup-epochs -1", "--warmup-epochs"),
    ("train-warmup-all-epochs", f"{SYN} --epochs 2 --warmup-epochs 2", "--warmup-epochs"),
    ("train-lr-decay-0", f"{SYN} --lr-decay 0", "--lr-decay"),
    ("train-lr-decay-2", f"{SYN} --lr-decay 2", "--lr-decay"),
    ("train-ema-1", f"{SYN} --ema 1", "--ema"),
    ("train-ema-negative", f"{SYN} --ema -0.5", "--ema"),
    ("train-ema-nan", f"{SYN} --ema nan", "--ema"),
    ("train-milestones-outside", f"{SYN} --schedule step --milestones 0.5,1.5", "--milestones"),
    ("train-milestones-text", f"{SYN} --milestones a,b", "--milestones"),
    ("train-milestones-nan", f"{SYN} --milestones nan", "--milestones"),
    ("train-threads-0", f"{SYN} --threads 0", "--threads"),
    ("train-seed-negative", f"{SYN} --seed -1", "--seed"),
    ("train-seed-huge", f"{SYN} --seed 4294967296", "--seed"),
    ("train-batch-size-1", f"{SYN} --batch-size 1", "--batch-size"),
    ("train-batch-size-0", f"{SYN} --batch-size 0", "--batch-size"),
    ("train-label-smoothing-1", f"{SYN} --label-smoothing 1", "--label-smoothing"),
    ("train-label-smoothing-nan", f"{SYN} --label-smoothing nan", "--label-smoothing"),
    ("train-mixup-negative", f"{SYN} --mixup -0.2", "--mixup"),
    ("train-mixup-nan", f"{SYN} --mixup nan", "--mixup"),
    ("train-mixup-inf", f"{SYN} --mixup inf", "--mixup"),
    ("train-train-fraction-0", f"{SYN} --train-fraction 0", "--train-fraction"),
    ("train-train-fraction-1.5", f"{SYN} --train-fraction 1.5", "--train-fraction"),
    ("train-train-fraction-nan", f"{SYN} --train-fraction nan", "--train-fraction"),
    ("train-val-fraction-0", f"{SYN} --val-fraction 0", "--val-fraction"),
    ("train-val-fraction-1", f"{SYN} --val-fraction 1", "--val-fraction"),
    ("train-test-fraction-nan", f"{SYN} --test-fraction nan", "--test-fraction"),
    ("train-fractions-sum-1", f"{SYN} --val-fraction 0.5 --test-fraction 0.5", "--val-fraction"),
    ("train-size-0", f"{SYN} --size 0", "--size"),
    ("train-resize-4", f"{SYN} --resize 4", "--resize"),
    ("train-patch-even", f"{SYN} --patch 26", "--patch"),
    ("train-patch-3", f"{SYN} --patch 3", "--patch"),
    ("train-pretrain-epochs-0", f"{SYN} --pretrain-epochs 0", "--pretrain-epochs"),
    ("train-unfreeze-every-negative", f"{SYN} --unfreeze-every -1", "--unfreeze-every"),
    # ------------------------------------------------------------------ train: choices
    ("train-channels-2", f"{SYN} --channels 2", "--channels"),
    ("train-optimizer", f"{SYN} --optimizer rmsprop", "--optimizer"),
    ("train-schedule", f"{SYN} --schedule linear", "--schedule"),
    ("train-precision", f"{SYN} --precision fp8", "--precision"),
    ("train-class-weights", f"{SYN} --class-weights inverse", "--class-weights"),
    ("train-tta", f"{SYN} --tta d8", "--tta"),
    ("train-select-metric", f"{SYN} --select-metric f1", "--select-metric"),
    ("train-resize-mode", f"{SYN} --resize-mode bicubic", "--resize-mode"),
    ("train-window-one-number", f"{SYN} --window 40", "--window"),
    ("train-volumes-to-a-2d-network", "train --dataset adrenalmnist3d --arch simple-cnn --epochs 1 --out {out}",
     "2D network"),
    ("train-images-to-a-3d-network", "train --dataset synthetic --arch cnn3d --epochs 1 --out {out}", "takes volumes"),
    ("train-deep-supervision-2d", f"{SYN} --model-option deep_supervision=[0.3]", "deep_supervision"),
    ("train-deep-supervision-negative", "train --dataset adrenalmnist3d --arch cnn3d --model-option "
     "deep_supervision=[-1] --epochs 1 --out {out}", "deep_supervision"),
    ("train-deep-supervision-too-many", "train --dataset adrenalmnist3d --arch cnn3d --model-option widths=[4,8] "
     "--model-option deep_supervision=[0.3,0.3] --epochs 1 --out {out}", "deep_supervision"),
    ("train-volumes-warped", "train --dataset adrenalmnist3d --arch cnn3d --augment strong --epochs 1 --out {out}",
     "volumes take"),
    ("train-window-zero-width", f"{SYN} --window 40,0", "--window"),
    ("train-window-unknown-preset", f"{SYN} --window lungs", "--window"),
    ("train-loading", f"{SYN} --loading disk", "--loading"),
    ("train-workers-negative", f"{SYN} --workers -1", "--workers"),
    ("train-pretrain-choice", f"{SYN} --pretrain dbn", "--pretrain"),
    ("train-pretrain-rbm-cnn", f"{SYN} --pretrain rbm", "--arch mlp"),
    ("train-finetune-bad", f"{SYN} --finetune some", "--finetune"),
    ("train-finetune-head-alone", f"{SYN} --finetune head", "--init-from"),
    ("train-augment-bad", f"{SYN} --augment wobble=1", "wobble"),
    ("train-device-bad", f"{SYN} --device gpu", "--device"),
    ("train-activation-bad", f"{ARCH} mlp --activation softmax", "--activation"),
    ("train-arch-unknown", f"{SYN} --arch resnet7", "resnet7"),
    # ------------------------------------------------------------------ train: model options, per architecture
    ("train-model-option-no-equals", f"{SYN} --model-option widths", "KEY=VALUE"),
    ("train-model-option-empty-key", f"{SYN} --model-option =4", "KEY=VALUE"),
    ("train-simple-cnn-unknown-option", f"{SYN} --model-option depth=3", "depth"),
    ("train-simple-cnn-widths-banana", f"{SYN} --model-option widths=banana", "widths"),
    ("train-simple-cnn-widths-0", f"{SYN} --model-option widths=[0]", "widths"),
    ("train-simple-cnn-hidden-negative", f"{SYN} --model-option hidden=-5", "hidden"),
    ("train-simple-cnn-hidden-float", f"{SYN} --model-option hidden=[8.5]", "hidden"),
    ("train-simple-cnn-dropout-1.5", f"{SYN} --model-option dropout=1.5", "dropout"),
    ("train-simple-cnn-dropout-text", f"{SYN} --model-option dropout=high", "dropout"),
    ("train-simple-cnn-convs-0", f"{SYN} --model-option convs_per_block=0", "convs_per_block"),
    ("train-mlp-hidden-0", f"{ARCH} mlp --hidden 0", "hidden"),
    ("train-mlp-hidden-negative", f"{ARCH} mlp --hidden=-5", "hidden"),
    ("train-mlp-hidden-text", f"{ARCH} mlp --hidden 500,abc", "hidden"),
    ("train-mlp-hidden-option-0", f"{ARCH} mlp --model-option hidden=[64,0]", "hidden"),
    ("train-mlp-widths", f"{ARCH} mlp --model-option widths=[4]", "widths"),
    ("train-mlp-activation-option", f"{ARCH} mlp --model-option activation=softmax", "activation"),
    ("train-mlp-dropout-negative", f"{ARCH} mlp --model-option dropout=-0.1", "dropout"),
    ("train-resnet-takes-no-options", f"{ARCH} resnet18 --model-option widths=[4]", "widths"),
    ("train-lenet-c3-table-text", f"{ARCH} lenet5 --model-option c3_table=maybe", "c3_table"),
    ("train-googlenet-inception", f"{ARCH} googlenet --model-option inception=huge", "inception"),
    ("train-googlenet-aux-dropout", f"{ARCH} googlenet --model-option dropout_aux=1", "dropout_aux"),
    ("train-alexnet-dropout-nan", f"{ARCH} alexnet --model-option dropout=NaN", "dropout"),
    ("train-inception-aux-logits-text", f"{ARCH} inception_v3 --resize 299 --model-option aux_logits=yes",
     "aux_logits"),
    ("train-patch-cnn-pool", f"{ARCH} patch-cnn --model-option pool=min", "pool"),
    ("train-patch-cnn-pool-kernel-0", f"{ARCH} patch-cnn --model-option pool_kernel=0", "pool_kernel"),
    ("train-torchvision-unknown-option", f"{ARCH} densenet121 --model-option foo=1", "foo"),
    # ------------------------------------------------------------------ train: --config files
    ("train-config-missing", f"{SYN} --config {{tmp}}/nothing.yaml", "not found"),
    ("train-config-folder", f"{SYN} --config {{folder}}", "--config"),
    ("train-config-not-utf8", f"{SYN} --config {{binary}}", "--config"),
    ("train-config-bad-yaml", f"{SYN} --config {{y_bad_yaml}}", "YAML"),
    ("train-config-a-list", f"{SYN} --config {{y_a_list}}", "mapping"),
    ("train-config-unknown-key", f"{SYN} --config {{y_unknown_key}}", "learning_rate"),
    ("train-config-milestones-abc", f"{SYN} --config {{y_milestones_abc}}", "milestones"),
    ("train-config-milestones-strings", f"{SYN} --config {{y_milestones_strings}}", "milestones"),
    ("train-config-model-options-str", f"{SYN} --config {{y_model_options_str}}", "model_options"),
    ("train-config-model-options-str-merged", f"{SYN} --config {{y_model_options_str}} --model-option dropout=0.1",
     "model_options"),
    ("train-config-widths-banana", "train --dataset synthetic --epochs 1 --config {y_model_options_banana} "
     "--out {out}", "widths"),
    ("train-config-epochs-text", f"{SYN} --config {{y_epochs_text}}".replace("--epochs 1", ""), "epochs"),
    ("train-config-epochs-float", f"{SYN} --config {{y_epochs_float}}".replace("--epochs 1", ""), "epochs"),
    ("train-config-lr-nan", f"{SYN} --config {{y_lr_nan}}", "lr"),
    ("train-config-lr-bool", f"{SYN} --config {{y_lr_bool}}", "lr"),
    ("train-config-seed-negative", f"{SYN} --config {{y_seed_negative}}", "seed"),
    ("train-config-channels-2", f"{SYN} --config {{y_channels_two}}", "channels"),
    ("train-config-device-list", f"{SYN} --config {{y_device_list}}", "device"),
    ("train-config-segment-setting", f"{SYN} --config {{y_tile_text}}", "segmentation"),
    # ------------------------------------------------------------------ train: data and weights that are not there
    ("train-images-missing", f"{SYN} --images {{tmp}}/no-such-folder", "no-such-folder"),
    ("train-manifest-missing", f"{SYN} --manifest {{tmp}}/no.csv", "no.csv"),
    ("train-dataset-unknown", f"train --dataset octmnist3d --data-root {{tmp}}/none {TINY} --out {{out}}",
     "octmnist3d"),
    ("train-init-from-missing", f"{SYN} --init-from {{tmp}}/weights.pth", "weights.pth"),
    ("train-init-from-not-a-run", f"{SYN} --init-from {{folder}}", "--init-from"),
    ("train-images-no-class-folders", f"{SYN} --images {{images}}", "images"),
    ("train-manifest-bad-rows", f"{SYN} --manifest {{manifest}}", "manifest"),
    ("train-init-from-corrupt", f"{SYN} --init-from {{bad_ckpt}}", "safetensors"),
    ("train-taxonomy-missing", f"{SYN} --taxonomy {{tmp}}/tree.yaml", "tree.yaml"),
    ("train-taxonomy-a-folder", f"{SYN} --taxonomy {{folder}}", "folder"),
    ("train-taxonomy-bad-yaml", f"{SYN} --taxonomy {{y_bad_yaml}}", "YAML"),
    ("train-train-level-alone", f"{SYN} --train-level coarse", "--taxonomy"),
    # ------------------------------------------------------------------ train: --out and --resume
    ("train-out-empty", f"train --dataset synthetic {TINY} --out ''", "--out"),
    ("train-out-a-file", f"train --dataset synthetic {TINY} --out {{afile}}", "--out"),
    ("train-out-under-a-file", f"train --dataset synthetic {TINY} --out {{afile}}/run", "--out"),
    ("train-out-read-only", f"train --dataset synthetic {TINY} --out /sys/medconv-test/run", "--out"),
    ("train-out-holds-a-run", f"train --dataset synthetic {TINY} --out {{clf}}", "already holds a run"),
    ("train-resume-nothing", "train --resume --out {out}", "nothing to resume"),
    ("train-resume-with-config", "train --resume --out {clf} --config {y_lr_nan}", "--config"),
    ("train-resume-changed-lr", "train --resume --out {clf} --lr 0.5", "--lr"),
    ("train-resume-segment-run", "train --resume --out {seg}", "segment"),
    ("train-resume-corrupt", "train --resume --out {bad_ckpt}", "safetensors"),
    ("train-no-out", "train --dataset synthetic", "--out"),
    ("train-unknown-option", f"{SYN} --learning-rate 0.1", "--learning-rate"),
    # ------------------------------------------------------------------ evaluate
    ("evaluate-run-missing", "evaluate {tmp}/no-run", "no-run"),
    ("evaluate-not-a-run", "evaluate {folder}", "checkpoint"),
    ("evaluate-no-checkpoint", "evaluate {no_ckpt}", "checkpoint"),
    ("evaluate-corrupt-checkpoint", "evaluate {bad_ckpt}", "safetensors"),
    ("evaluate-foreign-checkpoint", "evaluate {foreign_ckpt}", "medconv"),
    ("evaluate-last-missing", "evaluate {clf_best_only} --checkpoint last", "last"),
    ("evaluate-segment-run", "evaluate {seg}", "segment"),
    ("evaluate-split", "evaluate {clf} --split holdout", "--split"),
    ("evaluate-checkpoint-choice", "evaluate {clf} --checkpoint first", "--checkpoint"),
    ("evaluate-neighbours-not-nuclei", "evaluate {clf} --neighbours 2", "--neighbours 2: the neighbouring ensemble"),
    ("evaluate-neighbours-negative", "evaluate {clf} --neighbours -1", "--neighbours"),
    ("evaluate-tta", "evaluate {clf} --tta rot", "--tta"),
    ("evaluate-level-without-taxonomy", "evaluate {clf} --level coarse", "--level"),
    ("evaluate-no-run-dir", "evaluate", "RUN_DIR"),
    # ------------------------------------------------------------------ predict
    ("predict-run-missing", "predict {tmp}/no-run {png}", "no-run"),
    ("predict-not-a-run", "predict {folder} {png}", "checkpoint"),
    ("predict-corrupt-checkpoint", "predict {bad_ckpt} {png}", "safetensors"),
    ("predict-segment-run", "predict {seg} {png}", "segment"),
    ("predict-no-inputs", "predict {clf}", "INPUT"),
    ("predict-input-missing", "predict {clf} {tmp}/scan.png", "scan.png"),
    ("predict-no-images-in-folder", "predict {clf} {folder}", "no images"),
    ("predict-text-as-image", "predict {clf} {text_png}", "text.png"),
    ("predict-empty-image", "predict {clf} {empty_png}", "empty.png"),
    ("predict-truncated-png", "predict {clf} {truncated_png}", "truncated.png"),
    ("predict-second-image-broken", "predict {clf} {mixed} --out {out}/p.csv", "b.png"),
    ("predict-out-a-folder", "predict {clf} {png} --out {folder}", "--out"),
    ("predict-out-empty", "predict {clf} {png} --out ''", "--out"),
    ("predict-out-is-input-folder", "predict {clf} {images} --out {images}", "--out"),
    ("predict-out-read-only", "predict {clf} {png} --out /sys/medconv-test/p.csv", "--out"),
    ("predict-out-under-a-file", "predict {clf} {png} --out {afile}/p.csv", "--out"),
    ("predict-level-without-taxonomy", "predict {clf} {png} --level coarse", "--level"),
    ("predict-tta", "predict {clf} {png} --tta d8", "--tta"),
    ("predict-last-missing", "predict {clf_best_only} {png} --checkpoint last", "last"),
    # ------------------------------------------------------------------ pretrain
    ("pretrain-hidden-0", "pretrain --dataset synthetic --hidden 0 --epochs 1 --out {out}", "hidden"),
    ("pretrain-hidden-negative", "pretrain --dataset synthetic --hidden=-5 --epochs 1 --out {out}", "hidden"),
    ("pretrain-hidden-text", "pretrain --dataset synthetic --hidden ten --epochs 1 --out {out}", "hidden"),
    ("pretrain-epochs-0", "pretrain --dataset synthetic --hidden 8 --epochs 0 --out {out}", "--epochs"),
    ("pretrain-method", "pretrain --dataset synthetic --method pca --out {out}", "--method"),
    ("pretrain-seed-negative", "pretrain --dataset synthetic --hidden 8 --seed -1 --out {out}", "--seed"),
    ("pretrain-dataset-unknown", "pretrain --dataset nomnist --data-root {tmp}/none --hidden 8 --out {out}",
     "nomnist"),
    ("pretrain-out-empty", "pretrain --dataset synthetic --hidden 8 --out ''", "--out"),
    ("pretrain-out-a-file", "pretrain --dataset synthetic --hidden 8 --out {afile}", "--out"),
    ("pretrain-no-out", "pretrain --dataset synthetic", "--out"),
    # ------------------------------------------------------------------ experiment
    ("experiment-name", "experiment exploding-gradient --out {out}", "exploding-gradient"),
    ("experiment-epochs-0", "experiment vanishing-gradient --dataset synthetic --epochs 0 --out {out}", "--epochs"),
    ("experiment-depths-0", "experiment vanishing-gradient --dataset synthetic --depths 0,2 --out {out}", "--depths"),
    ("experiment-depths-text", "experiment vanishing-gradient --dataset synthetic --depths two --out {out}",
     "--depths"),
    ("experiment-seed-negative", "experiment vanishing-gradient --dataset synthetic --seed -1 --out {out}", "--seed"),
    ("experiment-out-a-file", "experiment vanishing-gradient --dataset synthetic --out {afile}", "--out"),
    ("experiment-out-empty", "experiment vanishing-gradient --dataset synthetic --out ''", "--out"),
    # ------------------------------------------------------------------ inspect
    ("inspect-arch-unknown", "inspect resnet7", "resnet7"),
    ("inspect-nothing", "inspect", "ARCH"),
    ("inspect-input-bad", "inspect simple-cnn --input 3x224", "--input"),
    ("inspect-input-zero", "inspect simple-cnn --input 0x28x28", "--input"),
    ("inspect-classes-0", "inspect simple-cnn --input 1x28x28 --classes 0", "--classes"),
    ("inspect-classes-negative", "inspect simple-cnn --input 1x28x28 --classes -2", "--classes"),
    ("inspect-depth-0", "inspect simple-cnn --input 1x28x28 --depth 0", "--depth"),
    ("inspect-model-option-bad", "inspect simple-cnn --input 1x28x28 --model-option widths=banana", "widths"),
    ("inspect-model-option-unknown", "inspect resnet18 --model-option depth=3", "depth"),
    ("inspect-run-missing", "inspect --run {tmp}/no-run", "no-run"),
    ("inspect-run-corrupt", "inspect --run {bad_ckpt}", "safetensors"),
    ("inspect-image-missing", "inspect --run {clf} --filters {out}/f.png --image {tmp}/scan.png", "scan.png"),
    ("inspect-image-text", "inspect --run {clf} --filters {out}/f.png --image {text_png}", "text.png"),
    ("inspect-filters-a-folder", "inspect --run {clf} --filters {folder} --image {png}", "--filters"),
    ("inspect-plot-rf-read-only", "inspect --run {clf} --plot-rf /sys/medconv-test/rf.png", "--plot-rf"),
    ("inspect-layer-unknown", "inspect --run {clf} --plot-rf {out}/rf.png --layer conv99", "conv99"),
    ("inspect-fc-hidden-0", "inspect --fc-vs-conv --hidden 0", "--hidden"),
    ("inspect-fc-kernel-0", "inspect --fc-vs-conv --kernel 0", "--kernel"),
    ("inspect-fc-kernel-too-big", "inspect --fc-vs-conv --image 20x20 --kernel 30", "--kernel"),
    ("inspect-fc-channels-negative", "inspect --fc-vs-conv --channels -1", "--channels"),
    ("inspect-fc-maps-0", "inspect --fc-vs-conv --maps 0", "--maps"),
    ("inspect-fc-image-bad", "inspect --fc-vs-conv --image 200", "--image"),
    # ------------------------------------------------------------------ transfer
    ("transfer-extract-backbone-unknown", "transfer extract --backbone resnet7 --dataset synthetic --cache {tmp}/c",
     "resnet7"),
    ("transfer-extract-weights-missing", "transfer extract --backbone simple-cnn --weights {tmp}/w.pth "
     "--dataset synthetic --cache {tmp}/c", "w.pth"),
    ("transfer-extract-size-0", "transfer extract --backbone simple-cnn --dataset synthetic --size 0 --cache {tmp}/c",
     "--size"),
    ("transfer-extract-seed-negative", "transfer extract --backbone simple-cnn --dataset synthetic --seed -1 "
     "--cache {tmp}/c", "--seed"),
    ("transfer-extract-val-fraction-nan", "transfer extract --backbone simple-cnn --dataset synthetic "
     "--val-fraction nan --cache {tmp}/c", "--val-fraction"),
    ("transfer-extract-model-option", "transfer extract --backbone simple-cnn --dataset synthetic "
     "--model-option widths=banana --cache {tmp}/c", "widths"),
    ("transfer-extract-config-folder", "transfer extract --backbone simple-cnn --config {folder} --cache {tmp}/c",
     "--config"),
    ("transfer-extract-weights-not-a-run", "transfer extract --backbone simple-cnn --weights {folder} "
     "--dataset synthetic --cache {tmp}/c", "--weights"),
    ("transfer-extract-weights-unknown-name", "transfer extract --backbone resnet18 --weights IMAGENET9K "
     "--dataset synthetic --cache {tmp}/c", "IMAGENET9K"),
    ("transfer-extract-layer-unknown", "transfer extract --backbone simple-cnn --model-option widths=[4] "
     "--model-option hidden=[8] --layer layer9 --dataset synthetic --cache {tmp}/c", "layer9"),
    ("transfer-fit-head", f"{TRANSFER} --head forest", "--head"),
    ("transfer-fit-train-fraction-0", f"{TRANSFER} --train-fraction 0", "--train-fraction"),
    ("transfer-fit-channels-2", f"{TRANSFER} --channels 2", "--channels"),
    ("transfer-fit-out-empty", "transfer fit --backbone simple-cnn --dataset synthetic --cache {tmp}/c --out ''",
     "--out"),
    ("transfer-fit-out-a-file", "transfer fit --backbone simple-cnn --dataset synthetic --cache {tmp}/c "
     "--out {afile}", "--out"),
    ("transfer-fit-no-out", "transfer fit --backbone simple-cnn --dataset synthetic", "--out"),
    ("transfer-no-action", "transfer", "ACTION"),
    # ------------------------------------------------------------------ taxonomy
    ("taxonomy-show-missing", "taxonomy show {tmp}/tree.yaml", "tree.yaml"),
    ("taxonomy-show-bad-yaml", "taxonomy show {y_bad_yaml}", "YAML"),
    ("taxonomy-show-not-utf8", "taxonomy show {binary}", "binary"),
    ("taxonomy-show-a-folder", "taxonomy show {folder}", "folder"),
    ("taxonomy-show-level-unknown", "taxonomy show {tree} --level species", "species"),
    ("taxonomy-show-a-list", "taxonomy show {y_a_list}", "y_a_list"),
    ("taxonomy-partition-counts-missing", "taxonomy partition {tree} --counts {tmp}/counts.csv", "counts.csv"),
    ("taxonomy-partition-no-counts", "taxonomy partition {tree}", "--counts"),
    ("taxonomy-partition-size-0", "taxonomy partition {tree} --counts {counts} --max-class-size 0", "--max-class-size"),
    ("taxonomy-partition-size-text", "taxonomy partition {tree} --counts {counts} --max-class-size many",
     "--max-class-size"),
    ("taxonomy-partition-out-a-folder", "taxonomy partition {tree} --counts {counts} --out {folder}", "--out"),
    ("taxonomy-partition-out-empty", "taxonomy partition {tree} --counts {counts} --out ''", "--out"),
    ("taxonomy-partition-counts-text", "taxonomy partition {tree} --counts {binary}", "binary"),
    # ------------------------------------------------------------------ export
    ("export-run-missing", "export {tmp}/no-run", "no-run"),
    ("export-not-a-run", "export {folder}", "checkpoint"),
    ("export-corrupt-checkpoint", "export {bad_ckpt}", "safetensors"),
    ("export-format", "export {clf} --format keras", "--format"),
    ("export-checkpoint-file", "export {clf}/checkpoints/best.safetensors", "run directory"),
    ("export-checkpoint-choice", "export {seg} --checkpoint worst", "--checkpoint"),
    # ------------------------------------------------------------------ demo
    ("demo-epochs-0", "demo --no-download --epochs 0 --out {out}", "--epochs"),
    ("demo-epochs-negative", "demo --no-download --epochs -5 --out {out}", "--epochs"),
    ("demo-epochs-text", "demo --no-download --epochs many --out {out}", "--epochs"),
    ("demo-out-a-file", "demo --no-download --epochs 1 --out {afile}", "--out"),
    ("demo-out-empty", "demo --no-download --epochs 1 --out ''", "--out"),
    ("demo-out-holds-a-run", "demo --no-download --epochs 1 --out {clf}", "already holds a run"),
    # ------------------------------------------------------------------ segment train
    ("segment-train-patch-even", f"{SEG} --patch 16", "--patch"),
    ("segment-train-patch-1", f"{SEG} --patch 1", "--patch"),
    ("segment-train-tile-15", f"{SEG} --mode dense --tile 15", "--tile"),
    ("segment-train-tile-0", f"{SEG} --mode dense --tile 0", "--tile"),
    ("segment-train-tile-negative", f"{SEG} --tile -32", "--tile"),
    ("segment-train-radius-0", f"{SEG} --radius 0", "--radius"),
    ("segment-train-radius-nan", f"{SEG} --radius nan", "--radius"),
    ("segment-train-hard-fraction-2", f"{SEG} --hard-fraction 2", "--hard-fraction"),
    ("segment-train-hard-fraction-nan", f"{SEG} --hard-fraction nan", "--hard-fraction"),
    ("segment-train-border-weight-negative", f"{SEG} --mode dense --border-weight -1", "--border-weight"),
    ("segment-train-border-weight-nan", f"{SEG} --mode dense --border-weight nan", "--border-weight"),
    ("segment-train-border-sigma-0", f"{SEG} --mode dense --border-sigma 0", "--border-sigma"),
    ("segment-train-border-sigma-inf", f"{SEG} --mode dense --border-weight 10 --border-sigma inf",
     "--border-sigma"),
    ("segment-train-border-weight-patch", f"{SEG} --border-weight 10", "--border-weight"),
    ("segment-train-mpp-0", f"{SEG} --mpp 0", "--mpp"),
    ("segment-train-mpp-nan", f"{SEG} --mpp nan", "--mpp"),
    ("segment-train-samples-0", f"{SEG} --samples-per-epoch 0".replace("--samples-per-epoch 64 ", ""),
     "--samples-per-epoch"),
    ("segment-train-samples-negative", f"{SEG} --samples-per-epoch -64", "--samples-per-epoch"),
    ("segment-train-batch-size-negative", f"{SEG} --batch-size -8", "--batch-size"),
    ("segment-train-epochs-0", f"{SEG} --epochs 0", "--epochs"),
    ("segment-train-lr-nan", f"{SEG} --lr nan", "--lr"),
    ("segment-train-seed-negative", f"{SEG} --seed -1", "--seed"),
    ("segment-train-val-fraction-1", f"{SEG} --val-fraction 1", "--val-fraction"),
    ("segment-train-mode", f"{SEG} --mode sparse", "--mode"),
    ("segment-train-balance", f"{SEG} --balance equal", "--balance"),
    ("segment-train-target", f"{SEG} --target gaussian", "--target"),
    ("segment-train-select-metric", f"{SEG} --select-metric auc", "--select-metric"),
    ("segment-train-proximity-without-points", f"{SEG} --target proximity", "point"),
    ("segment-train-unet-patch-mode", f"{SEG} --arch unet", "--mode dense"),
    ("segment-train-unet3d-on-images", f"{SEG} --arch unet3d", "segments volumes"),
    ("segment-train-volumes-2d-network", "segment train --manifest {vol_seg_other_grid} --arch unet --epochs 1 "
     "--out {out}", "3D network"),
    ("segment-train-volume-mask-other-grid", "segment train --manifest {vol_seg_other_grid} --epochs 1 --out {out}",
     "one grid"),
    ("segment-train-volume-tile-12", "segment train --manifest {vol_seg_other_grid} --tile 12 --epochs 1 "
     "--out {out}", "multiple of 8"),
    ("train-pretrain-data-without-cae", f"{SYN} --pretrain-data msd_hippocampus", "--pretrain cae"),
    ("train-pretrain-data-2d-flag", "train --dataset adrenalmnist3d --arch cnn3d --pretrain cae --pretrain-epochs 1 "
     "--pretrain-data breastmnist --epochs 1 --out {out}", "not volumes"),
    ("train-nproc-more-than-devices", f"{SYN} --nproc 100000", "--nproc 100000: this machine has"),
    ("train-nproc-0", f"{SYN} --nproc 0", "--nproc"),
    ("segment-train-nproc-more-than-devices", f"{SEG} --nproc 100000", "--nproc 100000: this machine has"),
    ("segment-predict-slide-level-missing", "segment predict {seg} {slide} --slide-level 7 --allow-unfinished "
     "--out {out}", "has levels 0-1"),
    ("segment-predict-slide-halo-small", "segment predict {seg} {slide} --slide-level 0 --halo 0 --allow-unfinished "
     "--out {out}", "receptive radius"),
    ("segment-predict-slide-tile-off-grid", "segment predict {seg} {slide} --slide-level 0 --slide-tile 40 "
     "--allow-unfinished --out {out}", "multiples of 16"),
    ("detect-predict-slide-level-missing", "detect predict {det} {slide} --slide-level 5 --allow-unfinished "
     "--out {out}/d.csv", "has levels 0-1"),
    ("detect-predict-slide-tile-off-grid", "detect predict {det} {slide} --slide-level 0 --slide-tile 40 "
     "--allow-unfinished --out {out}/d.csv", "multiples of 16"),
    ("train-spacing-negative", f"{SYN} --spacing 1,-1,1", "--spacing"),
    ("train-spacing-two-numbers", f"{SYN} --spacing 1,2", "--spacing"),
    ("train-spacing-medmnist", "train --dataset adrenalmnist3d --arch cnn3d --spacing 1 --epochs 1 --out {out}",
     "--spacing"),
    ("segment-train-spacing-images", f"{SEG} --spacing 1", "--spacing resamples volumes"),
    ("train-volume-dicom-two-series", "train --manifest {vol_manifest_two_series} --arch cnn3d --epochs 1 "
     "--out {out}", "2 DICOM series"),
    ("segment-train-dense-patch-cnn", f"{SEG} --mode dense --arch patch-cnn", "--arch unet"),
    ("segment-train-value-map-bad", f"{SEG} --value-map 255-0", "value map"),
    ("segment-train-augment-bad", f"{SEG} --augment spin=1", "spin"),
    ("segment-train-hard-negatives-no-points", f"{SEG} --hard-negatives {{det}}", "point"),
    ("segment-train-images-missing", "segment train --images {tmp}/imgs --masks {tmp}/masks --patch 15 --out {out}",
     "imgs"),
    ("segment-train-dataset-unknown", "segment train --dataset isbi2099 --patch 15 --out {out}", "isbi2099"),
    ("segment-train-patch-cnn-widths", f"{SEG} --model-option widths=banana", "widths"),
    ("segment-train-patch-cnn-kernels-0", f"{SEG} --model-option widths=[4] --model-option kernels=[0]", "kernels"),
    ("segment-train-patch-cnn-unknown", f"{SEG} --model-option depth=2", "depth"),
    ("segment-train-patch-cnn-batch-norm", f"{SEG} --model-option batch_norm=perhaps", "batch_norm"),
    ("segment-train-unet-features", f"{SEG} --mode dense --tile 32 --model-option features=[4,4]", "features"),
    ("segment-train-config-tile-text", f"{SEG} --config {{y_tile_text}}", "tile"),
    ("segment-train-config-classes-number", f"{SEG} --config {{y_classes_number}}", "classes"),
    ("segment-train-config-radius-text", f"{SEG} --config {{y_radius_text}}", "radius"),
    ("segment-train-config-classifier-setting", f"{SEG} --config {{y_lr_nan}}", "lr"),
    ("segment-train-config-folder", f"{SEG} --config {{folder}}", "--config"),
    ("segment-train-config-not-utf8", f"{SEG} --config {{binary}}", "--config"),
    ("segment-train-classes-one", f"{SEG} --classes membrane", "--classes"),
    ("segment-train-resume-classifier-run", "segment train --resume --out {clf}", "classification run"),
    ("segment-train-out-empty", "segment train --dataset isbi2012 --patch 15 --out ''", "--out"),
    ("segment-train-out-a-file", "segment train --dataset isbi2012 --patch 15 --out {afile}", "--out"),
    # ------------------------------------------------------------------ segment predict
    ("segment-predict-run-missing", "segment predict {tmp}/no-run {png} --out {out}", "no-run"),
    ("segment-predict-classifier-run", "segment predict {clf} {png} --out {out}", "segmentation run"),
    ("segment-predict-corrupt-checkpoint", "segment predict {bad_ckpt} {png} --out {out}", "safetensors"),
    ("segment-predict-threshold-2", "segment predict {seg} {png} --threshold 2 --out {out}", "--threshold"),
    ("segment-predict-threshold-negative", "segment predict {seg} {png} --threshold -0.1 --out {out}",
     "--threshold"),
    ("segment-predict-threshold-nan", "segment predict {seg} {png} --threshold nan --out {out}", "--threshold"),
    ("segment-predict-sigma-negative", "segment predict {seg} {png} --sigma -1 --out {out}", "--sigma"),
    ("segment-predict-sigma-inf", "segment predict {seg} {png} --sigma inf --out {out}", "--sigma"),
    ("segment-predict-opening-negative", "segment predict {seg} {png} --opening -1 --out {out}", "--opening"),
    ("segment-predict-closing-negative", "segment predict {seg} {png} --closing -2 --out {out}", "--closing"),
    ("segment-predict-min-size-negative", "segment predict {seg} {png} --min-size -10 --out {out}", "--min-size"),
    ("segment-predict-min-size-text", "segment predict {seg} {png} --min-size big --out {out}", "--min-size"),
    ("segment-predict-format", "segment predict {seg} {png} --format jpg --out {out}", "--format"),
    ("segment-predict-method", "segment predict {seg} {png} --method fast --out {out}", "--method"),
    ("segment-predict-tta", "segment predict {seg} {png} --tta d8 --out {out}", "--tta"),
    ("segment-predict-input-missing", "segment predict {seg} {tmp}/slice.png --out {out}", "slice.png"),
    ("segment-predict-text-as-image", "segment predict {seg} {text_png} --out {out}", "text.png"),
    ("segment-predict-truncated-png", "segment predict {seg} {truncated_png} --out {out}", "truncated.png"),
    ("segment-predict-second-image-broken", "segment predict {seg} {mixed} --out {out}", "b.png"),
    ("segment-predict-out-empty", "segment predict {seg} {png} --out ''", "--out"),
    ("segment-predict-out-a-file", "segment predict {seg} {png} --out {afile}", "--out"),
    ("segment-predict-out-read-only", "segment predict {seg} {png} --out /sys/medconv-test/maps", "--out"),
    ("segment-predict-out-is-input", "segment predict {seg} {images} --out {images}", "--out"),
    ("segment-predict-out-inside-input", "segment predict {seg} {images} --out {images}/maps", "--out"),
    ("segment-predict-no-out", "segment predict {seg} {png}", "--out"),
    ("segment-predict-thin-patch-run", "segment predict {seg} {png} --thin --out {out}", "--thin"),
    # ------------------------------------------------------------------ segment evaluate
    ("segment-evaluate-run-missing", "segment evaluate {tmp}/no-run", "no-run"),
    ("segment-evaluate-classifier-run", "segment evaluate {clf}", "segmentation run"),
    ("segment-evaluate-no-checkpoint", "segment evaluate {no_ckpt}", "checkpoint"),
    ("segment-evaluate-split", "segment evaluate {seg} --split all", "--split"),
    ("segment-evaluate-method", "segment evaluate {seg} --method fast", "--method"),
    ("segment-no-action", "segment", "ACTION"),
    # ------------------------------------------------------------------ detect train
    ("detect-train-tolerance-0", f"{DET} --tolerance 0", "--tolerance"),
    ("detect-train-tolerance-negative", f"{DET} --tolerance -6", "--tolerance"),
    ("detect-train-tolerance-nan", f"{DET} --tolerance nan", "--tolerance"),
    ("detect-train-tolerance-um-no-mpp", f"{DET} --tolerance-um 3", "--mpp"),
    ("detect-train-tolerance-um-negative", f"{DET} --mpp 0.5 --tolerance-um -3", "--tolerance-um"),
    ("detect-train-radius-negative", f"{DET} --radius -4", "--radius"),
    ("detect-train-patch-even", f"{DET} --patch 14", "--patch"),
    ("detect-train-mpp-negative", f"{DET} --mpp -0.5", "--mpp"),
    ("detect-train-target", f"{DET} --target ring", "--target"),
    ("detect-train-points-missing", "detect train --points {tmp}/points.csv --images {images} --patch 15 "
     "--out {out}", "points.csv"),
    ("detect-train-out-a-file", "detect train --dataset crchistophenotypes --patch 15 --out {afile}", "--out"),
    # ------------------------------------------------------------------ detect tune
    ("detect-tune-run-missing", "detect tune {tmp}/no-run", "no-run"),
    ("detect-tune-not-a-detector", "detect tune {seg}", "detect"),
    ("detect-tune-tolerance-0", "detect tune {det} --tolerance 0", "--tolerance"),
    ("detect-tune-tolerance-nan", "detect tune {det} --tolerance nan", "--tolerance"),
    ("detect-tune-tta-bad", "detect tune {det} --tta none,spin", "--tta"),
    ("detect-tune-tta-empty", "detect tune {det} --tta ''", "--tta"),
    ("detect-tune-tolerance-um-no-mpp", "detect tune {det} --tolerance-um 3", "--mpp"),
    ("detect-tune-mpp-0", "detect tune {det} --tolerance-um 3 --mpp 0", "--mpp"),
    ("detect-tune-tolerance-um-negative", "detect tune {det} --tolerance-um -2 --mpp 0.5", "--tolerance-um"),
    # ------------------------------------------------------------------ detect predict
    ("detect-predict-run-missing", "detect predict {tmp}/no-run {rgb_png}", "no-run"),
    ("detect-predict-not-a-detector", "detect predict {seg} {rgb_png}", "detect"),
    ("detect-predict-corrupt-onnx", "detect predict {det_bad_onnx} {rgb_png}", "model.onnx"),
    ("detect-predict-corrupt-onnx-json", "detect predict {det_bad_json} {rgb_png}", "model.json"),
    ("detect-predict-corrupt-detect-json", "detect predict {det_bad_params} {rgb_png}", "detect.json"),
    ("detect-predict-nms-negative", "detect predict {det} {rgb_png} --nms-radius -1", "--nms-radius"),
    ("detect-predict-nms-nan", "detect predict {det} {rgb_png} --nms-radius nan", "--nms-radius"),
    ("detect-predict-tta", "detect predict {det} {rgb_png} --tta d8", "--tta"),
    ("detect-predict-input-missing", "detect predict {det} {tmp}/slide.png", "slide.png"),
    ("detect-predict-text-as-image", "detect predict {det} {text_png}", "text.png"),
    ("detect-predict-empty-image", "detect predict {det} {empty_png}", "empty.png"),
    ("detect-predict-second-image-broken", "detect predict {det} {mixed} --out {out}/d.csv", "b.png"),
    ("detect-predict-out-a-folder", "detect predict {det} {rgb_png} --out {folder}", "--out"),
    ("detect-predict-out-empty", "detect predict {det} {rgb_png} --out ''", "--out"),
    ("detect-predict-classifier-missing", "detect predict {det} {rgb_png} --classifier {tmp}/no-run", "no-run"),
    ("detect-predict-classifier-grey", "detect predict {det} {rgb_png} --classifier {clf}", "channel"),
    ("detect-predict-classifier-a-detector", "detect predict {det} {rgb_png} --classifier {det}", "--classifier"),
    ("detect-predict-classifier-corrupt", "detect predict {det} {rgb_png} --classifier {bad_ckpt}", "safetensors"),
    # ------------------------------------------------------------------ detect evaluate
    ("detect-evaluate-run-missing", "detect evaluate {tmp}/no-run", "no-run"),
    ("detect-evaluate-split", "detect evaluate {det} --split everything", "--split"),
    ("detect-evaluate-tolerance-negative", "detect evaluate {det} --tolerance -1", "--tolerance"),
    ("detect-evaluate-tolerance-um-no-mpp", "detect evaluate {det} --tolerance-um 3", "--mpp"),
    ("detect-evaluate-classifier-missing", "detect evaluate {det} --classifier {tmp}/no-run", "no-run"),
    ("detect-evaluate-classifier-grey", "detect evaluate {det} --classifier {clf}", "channel"),
    # ------------------------------------------------------------------ measure
    ("measure-missing", "measure {tmp}/nothing.nii.gz", "not found"),
    ("measure-a-png", "measure {png}", "voxel spacing"),
    ("measure-not-labels", "measure {float_nii}", "not a label map"),
    ("measure-reference-count", "measure {labels_nii} {labels_nii} --reference {labels_nii}", "one per map"),
    ("measure-reference-shape-bad", "measure {labels_nii} --reference {text_png}", "text.png"),
    ("measure-names", "measure {labels_nii} --names anterior", "--names"),
    ("measure-out-folder", "measure {labels_nii} --out {folder}", "--out"),
    # ------------------------------------------------------------------ explain
    ("explain-layer-unknown", "explain {clf} {png} --layer nosuch --out {out}", "nosuch"),
    ("explain-layer-not-a-map", "explain {clf} {png} --layer classifier --out {out}", "not a feature map"),
    ("explain-occlusion-layer", "explain {clf} {png} --method occlusion --layer features.0 --out {out}", "--layer"),
    ("explain-segment-run", "explain {seg} {png} --out {out}", "classification run"),
    ("explain-run-missing", "explain {tmp}/no-run {png} --out {out}", "no-run"),
    ("report-run-missing", "report {tmp}/no-run", "no such run folder"),
    ("report-not-a-run", "report {tmp}", "not a medconv run"),
    ("explain-corrupt-checkpoint", "explain {bad_ckpt} {png} --out {out}", "safetensors"),
    ("explain-method", "explain {clf} {png} --method lime --out {out}", "--method"),
    ("explain-class-unknown", "explain {clf} {png} --class cyst --out {out}", "--class"),
    ("explain-class-out-of-range", "explain {clf} {png} --class 2 --out {out}", "--class"),
    ("explain-no-inputs", "explain {clf}", "INPUT"),
    ("explain-input-missing", "explain {clf} {tmp}/scan.png --out {out}", "scan.png"),
    ("explain-text-as-image", "explain {clf} {text_png} --out {out}", "text.png"),
    ("explain-second-image-broken", "explain {clf} {mixed} --out {out}", "b.png"),
    ("explain-out-a-file", "explain {clf} {png} --out {afile}", "--out"),
    ("explain-out-is-input-folder", "explain {clf} {images} --out {images}", "--out"),
    # ------------------------------------------------------------------ no verb at all
    ("no-verb", "", "VERB"),
    ("unknown-verb", "fit --out {out}", "fit"),
]


def save_run(path: Path, arch: str, options: dict, channels: int, side: int, classes: list[str], meta: dict,
             last: bool = False) -> None:
    """A run directory as training leaves one, with a tiny untrained network: checkpoints/best (and last)."""
    from medconv.models.registry import build_model
    from medconv.training.checkpoint import save_checkpoint

    model = build_model(arch, channels, len(classes), (side, side), **options)
    meta = {"arch": arch, "model_options": options, "in_channels": channels, "num_classes": len(classes),
            "input_size": [side, side], "classes": classes, "mean": [0.5] * channels, "std": [0.25] * channels,
            "epoch": 1, **meta}
    for which in ("best", "last") if last else ("best",):
        save_checkpoint(path / "checkpoints" / f"{which}.safetensors", model, meta)
    (path / "config.yaml").write_text(json.dumps(meta["config"]))


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, str]:
    """The runs and files the table's {placeholders} name."""
    return make_files(tmp_path_factory.mktemp("bad-input"))


def make_files(root: Path) -> dict[str, str]:
    """The runs and files the table's {placeholders} name, made under `root`: {name: path}."""
    paths: dict[str, Path] = {}

    def at(name: str) -> Path:
        paths[name] = root / name
        return paths[name]

    tiny = {"widths": [4], "hidden": [8]}
    cfg = TrainConfig(dataset="synthetic", arch="simple-cnn", model_options=tiny, epochs=1)
    for name, last in (("clf", True), ("clf_best_only", False)):
        save_run(at(name), "simple-cnn", tiny, 1, 28, ["malignant", "benign"],
                 {"task": "binary-class", "dataset": "synthetic-lesions", "config": cfg.to_dict()}, last=last)
    patch = {"widths": [4], "kernels": [3], "hidden": [8]}
    seg = SegmentConfig(dataset="isbi2012", patch=15, model_options=patch, epochs=1).validate()
    save_run(at("seg"), "patch-cnn", patch, 1, 15, ["cell", "membrane"],
             {"task": "segmentation", "mode": "patch", "patch": 15, "tile": 128, "dataset": "isbi2012",
              "config": seg.to_dict()}, last=True)
    det = SegmentConfig(dataset="crchistophenotypes", patch=15, model_options=patch, epochs=1).validate()
    save_run(at("det"), "patch-cnn", patch, 3, 15, ["background", "centre"],
             {"task": "segmentation", "mode": "patch", "patch": 15, "tile": 128, "dataset": "crchistophenotypes",
              "config": det.to_dict()})
    params = {"sigma": 1.0, "min_distance": 3, "threshold": 0.5, "tta": "none", "tolerance": 6.0}
    (paths["det"] / "detect.json").write_text(json.dumps(params))
    for name in ("det_bad_onnx", "det_bad_json", "det_bad_params"):
        shutil.copytree(paths["det"], at(name))
    sidecar = {"arch": "patch-cnn", "mode": "patch", "tile": 128, "in_channels": 3, "classes": ["background", "centre"],
               "mean": [0.5] * 3, "std": [0.25] * 3, "checkpoint": "checkpoints/best.safetensors",
               "stamp": checkpoint_stamp(paths["det_bad_onnx"] / "checkpoints" / "best.safetensors")}
    (paths["det_bad_onnx"] / "model.json").write_text(json.dumps(sidecar))
    (paths["det_bad_onnx"] / "model.onnx").write_bytes(b"not an onnx graph")
    (paths["det_bad_json"] / "model.json").write_text("{\"arch\": \"patch-cnn\", ")
    (paths["det_bad_json"] / "model.onnx").write_bytes(b"not an onnx graph")
    (paths["det_bad_params"] / "detect.json").write_text("{\"sigma\": ")

    at("folder").mkdir()
    at("no_ckpt").mkdir()
    (paths["no_ckpt"] / "config.yaml").write_text("epochs: 1\n")
    (at("bad_ckpt") / "checkpoints").mkdir(parents=True)
    for which in ("best", "last"):
        (paths["bad_ckpt"] / "checkpoints" / f"{which}.safetensors").write_bytes(b"\x00\x01 not safetensors" * 10)
    (at("foreign_ckpt") / "checkpoints").mkdir(parents=True)
    save_file({"w": np.zeros(3, np.float32)}, str(paths["foreign_ckpt"] / "checkpoints" / "best.safetensors"))

    rng = np.random.default_rng(0)
    at("images").mkdir()
    paths["png"], paths["rgb_png"] = paths["images"] / "scan.png", root / "slide.png"
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(paths["png"])
    Image.fromarray(rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(paths["rgb_png"])
    paths.update(text_png=root / "text.png", empty_png=root / "empty.png", truncated_png=root / "truncated.png")
    paths["text_png"].write_text("this is not an image\n")
    paths["empty_png"].write_bytes(b"")
    whole = paths["png"].read_bytes()
    paths["truncated_png"].write_bytes(whole[:len(whole) // 2])
    at("mixed").mkdir()  # a folder whose second image is broken
    Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(paths["mixed"] / "a.png")
    (paths["mixed"] / "b.png").write_text("not an image\n")
    at("afile").write_text("a file that is not a run\n")
    at("manifest").write_text("path,label\nnowhere/scan.png,0\n")
    at("binary").write_bytes(b"\xff\xfe\x00epochs: \x81\x82\n")
    at("tree").write_text("tumour:\n  benign: [nevus]\n  malignant: [melanoma]\n")
    at("counts").write_text("node,images\nnevus,10\nmelanoma,5\n")
    for name, text in YAML.items():
        at(f"y_{name}").write_text(text)
    labels = np.zeros((6, 5, 4), np.uint8)
    labels[1:3, 1:3, 1:3] = 1
    paths.update(labels_nii=root / "labels.nii.gz", float_nii=root / "halves.nii.gz")
    nib.save(nib.Nifti1Image(labels, np.eye(4)), paths["labels_nii"])
    nib.save(nib.Nifti1Image(labels * 0.5, np.eye(4)), paths["float_nii"])
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 3), np.float32), np.eye(4)), root / "volume.nii.gz")
    with tifffile.TiffWriter(at("slide"), bigtiff=True) as tiff:  # a pyramidal slide of 2 levels
        pink = np.full((256, 256, 3), (200, 120, 170), np.uint8)
        tiff.write(pink, subifds=1, tile=(64, 64), photometric="rgb")
        tiff.write(pink[::2, ::2], subfiletype=1, tile=(64, 64), photometric="rgb")
    at("vol_seg_other_grid").write_text("image,mask,split\nvolume.nii.gz,labels.nii.gz,train\n")
    at("two_series").mkdir()  # one folder holding slices of two DICOM series
    for k, series in enumerate((generate_uid(), generate_uid())):
        ct_slice(paths["two_series"] / f"s{k}.dcm", np.zeros((5, 6)), z=float(k), series=series)
    at("vol_manifest_two_series").write_text("path,label,split\n" + "".join(f"two_series,0,{s}\n" for s in ("train", "val", "test")))
    return {name: str(p) for name, p in paths.items()}


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file below `folder` by (size, modification time); a training run's lock file is left out (an
    existing run keeps the one a refused command may have opened)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".medconv-lock"}


KNOWN_BUGS: dict[str, str] = {}  # case -> where the fix belongs: an expected failure until fixed (strict)


PROGRESS_FIRST = {  # cases that fail on a later input: the lines the earlier ones logged come before the error
    "segment-predict-second-image-broken", "detect-predict-second-image-broken"}


@pytest.mark.parametrize("case, argv, needle", [
    pytest.param(case, argv, needle, id=case,
                 marks=[pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[case])] if case in KNOWN_BUGS else [])
    for case, argv, needle in CASES])
def test_bad_input_is_one_line_and_exit_2(case, argv, needle, made, tmp_path, monkeypatch):
    work = tmp_path / "work"  # the command's working directory: --out '' and relative defaults land here
    work.mkdir()
    monkeypatch.chdir(work)
    words = [w.format(**made, out=work / "out", tmp=work) for w in shlex.split(argv)]
    root = Path(made["clf"]).parent
    before = snapshot(root)
    done = run_in_process(*words)
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 or (case in PROGRESS_FIRST and not any("error" in line for line in lines[:-1])), \
        done.stderr
    assert lines[-1].startswith("medconv") and ": error: " in lines[-1], lines[-1]
    assert needle.lower() in lines[-1].lower(), lines[-1]
    assert not any(work.iterdir()), f"written: {sorted(str(p) for p in work.rglob('*'))}"
    assert snapshot(root) == before, "a shared run or file changed"


def test_the_table_covers_every_verb():
    from medconv.cli import build_parser
    from test_cli_help import parsers

    commands = {path for path, parser in parsers(build_parser()) if not any(
        a.__class__.__name__ == "_SubParsersAction" for a in parser._actions)} - {"medconv"}
    covered = {"medconv " + " ".join(case.split("-")[:2]) for case, _, _ in CASES}
    covered |= {"medconv " + case.split("-")[0] for case, _, _ in CASES}
    assert commands <= covered, sorted(commands - covered)
    assert len(CASES) >= 150


@pytest.mark.parametrize("argv, settings", [
    pytest.param("--lr nan", {"lr": float("nan")}, id="lr-nan"),
    pytest.param("--seed -1", {"seed": -1}, id="seed-negative"),
    pytest.param("--val-fraction 0.5 --test-fraction 0.5", {"val_fraction": 0.5, "test_fraction": 0.5},
                 id="fractions"),
    pytest.param("--model-option hidden=-5", {"model_options": {"hidden": -5}}, id="model-option"),
    pytest.param("--arch mlp --hidden 0", {"arch": "mlp", "model_options": {"hidden": "0"}}, id="mlp-hidden-0"),
    pytest.param("--device gpu", {"device": "gpu"}, id="device"),
])
def test_the_python_api_refuses_what_the_cli_refuses(argv, settings, tmp_path, monkeypatch):
    """The options of a run land in its configuration, which checks itself: the same line either way."""
    monkeypatch.chdir(tmp_path)
    done = run_in_process("train", "--dataset", "synthetic", "--out", tmp_path / "run", *shlex.split(argv))
    with pytest.raises(UserError) as refused:
        TrainConfig(dataset="synthetic", **settings).validate()
    assert done.returncode == 2 and done.stderr.strip() == f"medconv train: error: {refused.value}"


@pytest.mark.parametrize("name", ["milestones_abc", "model_options_str", "tile_text", "lr_nan", "epochs_text"])
def test_a_bad_config_file_is_refused_by_load_config_as_by_the_cli(name, made, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    verb = ["segment", "train", "--dataset", "isbi2012"] if name == "tile_text" else ["train"]
    done = run_in_process(*verb, "--config", made[f"y_{name}"], "--out", tmp_path / "run")
    with pytest.raises(UserError) as refused:
        load_config(made[f"y_{name}"], SegmentConfig if name == "tile_text" else TrainConfig).validate()
    assert done.returncode == 2 and done.stderr.strip() == f"medconv {' '.join(verb[:2])}: error: {refused.value}"
