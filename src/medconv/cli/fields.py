"""Help, choices and metavar of the option generated for each field of the run configurations.

A field's entry is looked up first under its configuration class (by class name, walking the class's bases, so a
shared base class may hold the common ones), then in COMMON; model_options is --model-option (options.py).
tests/test_cli_help.py fails on a field without an entry.
"""
from __future__ import annotations

from typing import NamedTuple

from ..data.augment import TTA_MODES as TTA  # noqa: F401  (the --tta choices, as the configs check them)


class Field(NamedTuple):
    help: str
    choices: tuple | None = None
    metavar: str | None = None


DATA_ROOT = "folder holding the datasets (unset: $MEDCONV_DATA, else ~/.medconv/data)"

COMMON = {
    "window": Field("grey values to input: CENTER,WIDTH (e.g. 40,400 in Hounsfield units for DICOM CT) or a CT "
                    "preset (brain, subdural, stroke, lung, mediastinum, abdomen, liver, bone); unset: CT in HU "
                    "-1024..3071, other files by their bit depth", metavar="C,W|PRESET"),
    "spacing": Field("volumes: resample to this voxel spacing in mm first (MONAI's Spacing): one number for "
                     "isotropic voxels, or D,H,W as the data summary prints it; unset: the files' own",
                     metavar="MM|D,H,W"),
    "data_root": Field(DATA_ROOT, metavar="DIR"),
    "channels": Field("input channels (unset: as the images are); 3 copies grey into RGB, 1 takes RGB's luminance",
                      (1, 3)),
    "val_fraction": Field("fraction of the images held out for validation when the data names no splits",
                          metavar="FRACTION"),
    "test_fraction": Field("fraction of the images held out for testing when the data names no splits",
                           metavar="FRACTION"),
    "optimizer": Field("optimizer of the training steps"),
    "lr": Field("learning rate after warm-up; --schedule lowers it over the epochs", metavar="RATE"),
    "weight_decay": Field("weight decay: L2 penalty on the weights (decoupled from the gradient in adamw)",
                          metavar="DECAY"),
    "momentum": Field("momentum of sgd (adam and adamw ignore it)", metavar="BETA"),
    "schedule": Field("learning rate over the epochs: cosine decay, step (x --gamma at each of --milestones) "
                      "or constant"),
    "milestones": Field("step schedule: when the learning rate drops by --gamma, as fractions of the epochs",
                        metavar="A,B"),
    "gamma": Field("step schedule: factor on the learning rate at each of --milestones", metavar="FACTOR"),
    "warmup_epochs": Field("epochs over which the learning rate rises linearly to --lr (0: none)",
                           metavar="EPOCHS"),
    "lr_decay": Field("discriminative learning rates: each earlier layer group trains at this factor x the next "
                      "one's (1: all alike)", metavar="FACTOR"),
    "ema": Field("validate and keep an exponential moving average of the weights with this decay per step, "
                 "e.g. 0.99 (0: off)", metavar="DECAY"),
    "class_weights": Field("loss weight of each class: none (all 1) or balanced (inverse class frequency)"),
    "precision": Field("arithmetic of the training steps: fp32, or bf16/fp16 autocast on CPU or CUDA (./run bench "
                       "precision_speed measures the gain on your machine, about 3x for U-Net steps in bf16 on a "
                       "CPU with AMX); validation stays fp32; on a CPU, refused at the start where a layer's "
                       "gradients differ from fp32's (a fault of some CPUs' kernels)"),
    "seed": Field("random seed of the weights, the data order and the augmentation", metavar="N"),
    "deterministic": Field("deterministic algorithms only (slower; a resumed run ends with the same weights)"),
    "device": Field("where to train: auto (CUDA when there is one, else cpu), cpu, cuda or cuda:N",
                    metavar="DEVICE"),
    "threads": Field("CPU threads torch may use (unset: torch's choice)", metavar="N"),
    "tensorboard": Field("write TensorBoard logs in RUN_DIR/tensorboard/: each epoch's history (losses, metrics, "
                         "learning rate, seconds) and a grid of its first training inputs (needs pip install "
                         "tensorboard; view with tensorboard --logdir RUN_DIR/tensorboard)"),
}

CLASSIFY = {  # medconv train, transfer
    "dataset": Field("MedMNIST 2D flag (breastmnist, pneumoniamnist, pathmnist, ...), 'synthetic' or "
                     "'crchistophenotypes' (nucleus patches); ignored with --images or --manifest", metavar="NAME"),
    "images": Field("folder of class sub-folders (optionally under train/ val/ test/)", metavar="DIR"),
    "manifest": Field("CSV with columns path,label[,split][,group]", metavar="CSV"),
    "download": Field("download the MedMNIST file when it is missing"),
    "size": Field("side in px of the network input (unset: image files at the size they all share, which differing "
                  "sizes must choose; MedMNIST at 28, its files come at 28, 64, 128 and 224)", metavar="PX"),
    "resize": Field("upsample images to this side in px, e.g. 224 (MedMNIST '(224)') or 299 for inception_v3 "
                    "(unset with --init-from: the size the weights were trained at)", metavar="PX"),
    "resize_mode": Field("how images are brought to --size or --resize: resize (scale each axis, antialiased "
                         "bilinear; unset with --size), pad (no scaling: zero-pad, or crop when larger, around the "
                         "centre), crop (keep the aspect ratio: scale the shorter side, crop the centre); for --resize also "
                         "nearest (unset with --resize, as MedMNIST's '(224)' baselines) or bilinear"),
    "ds_decay": Field("deep supervision (--model-option deep_supervision=[0.3,0.3] on cnn3d): its auxiliary "
                      "losses' weights fade linearly to 0 over the epochs, as Hosseini-Asl et al. 2016"),
    "loading": Field("image files: memory (read once, held decoded), lazy (read as each batch needs them, by --workers "
                     "processes: cohorts larger than memory) or auto (memory when the decoded images fit in a quarter "
                     "of this machine's memory)"),
    "workers": Field("processes reading image files with --loading lazy (0: the training process; unset: 0 on 2 "
                     "cores or fewer, where a reading process slows training more than it saves, else one per 4 "
                     "cores, at most 4)", metavar="N"),
    "patch": Field("crchistophenotypes: side in px of the square RGB patch centred on each nucleus (odd, >= 5)",
                   metavar="PX"),
    "train_fraction": Field("use this stratified fraction of the training labels, in (0, 1]", metavar="FRACTION"),
    "arch": Field("network (see medconv inspect --list), or any torchvision classification model name",
                  metavar="NAME"),
    "pretrain": Field("layer-wise pretraining: rbm (contrastive divergence) or ae (autoencoders) for --arch mlp, "
                      "cae (convolutional autoencoders) for a CNN's convolutions, or none"),
    "pretrain_epochs": Field("with --pretrain: pretraining epochs per layer", metavar="EPOCHS"),
    "pretrain_data": Field("with --pretrain cae: pretrain on these images instead of the training split (labels "
                           "unused; a source domain): a MedMNIST flag (its training split), msd_hippocampus (its "
                           "MRIs), or a folder of NIfTI volumes; brought to the network's input size",
                           metavar="FLAG|msd_hippocampus|DIR"),
    "init_from": Field("start from weights: a run directory, a .safetensors/.pth file, or torchvision's "
                       "IMAGENET1K_V1", metavar="WEIGHTS"),
    "finetune": Field("with --init-from, which weights train: all, head (a frozen feature extractor) or "
                      "from:LAYER on", metavar="WHICH"),
    "taxonomy": Field("YAML tree whose leaves are the dataset's classes (evaluate/predict --level NAME sum them up)",
                      metavar="TREE.yaml"),
    "train_level": Field("with --taxonomy: train on the classes of this level (each leaf label mapped to its class)",
                         metavar="LEVEL"),
    "unfreeze_every": Field("gradual unfreezing: the head first, then one more layer group every N epochs (0: off)",
                            metavar="EPOCHS"),
    "epochs": Field("training epochs, each one pass over the training images", metavar="EPOCHS"),
    "batch_size": Field("images per training step", metavar="IMAGES"),
    "label_smoothing": Field("label smoothing of the cross-entropy: this share of the target spread over all "
                             "classes, in [0, 1)", metavar="SHARE"),
    "mixup": Field("mixup: train on blends of image pairs with weights ~ Beta(A, A), e.g. 0.2 (0: off)",
                   metavar="A"),
    "augment": Field("augmentation: a preset (none, light, strong, histology) or e.g. "
                     "hflip=0.5,rotate=15,translate=0.1,contrast=0.1", metavar="SPEC"),
    "tta": Field("test-time augmentation when the run is evaluated: the mean posterior of flipped (flip) or "
                 "flipped and turned (d4) images, or none"),
    "select_metric": Field("validation metric that picks the best checkpoint: the highest auc or acc, or the lowest loss"),
}

SEGMENT = {  # medconv segment train, detect train
    "dataset": Field("isbi2012 (ISBI 2012 EM membranes under the data root: train 00-19, val 20-24, test 25-29), "
                     "cpm15 (CPM-15 nuclei, instance maps kept for AJI) or crchistophenotypes (nucleus centres as "
                     "discs)", metavar="NAME"),
    "manifest": Field("CSV with columns image,mask[,roi][,split]", metavar="CSV"),
    "points": Field("detection: CSV with columns image,x,y[,class] (1-based x = column, y = row) for the files in "
                    "--images", metavar="CSV"),
    "mpp": Field("micrometres per pixel, when known (lets --tolerance-um set the match distance)", metavar="UM"),
    "images": Field("folder of images (matched to --masks by file stem)", metavar="DIR"),
    "masks": Field("folder of label masks, one per image of --images", metavar="DIR"),
    "roi": Field("folder of region-of-interest masks (outside: not trained or scored)", metavar="DIR"),
    "value_map": Field("mask value -> class, e.g. 255:0,0:1", metavar="V:C,..."),
    "mask_type": Field("mask values are labels (class indices, or --value-map), binary (non-zero = foreground) or "
                       "instances (object ids: trained as foreground, kept for AJI) (unset: labels; masks that look "
                       "like object ids are refused)", ("labels", "binary", "instances")),
    "classes": Field("class names in class order, e.g. background,nucleus", metavar="A,B"),
    "mode": Field("patch (classify the patch around each pixel) or dense (a U-Net on tiles)"),
    "arch": Field("patch-cnn (patch mode) or unet (dense mode) (unset: the one of --mode)", metavar="NAME"),
    "patch": Field("patch mode: odd patch side in px, e.g. 33, 65, 95", metavar="PX"),
    "tile": Field("dense mode: training tile side in px (multiple of 16)", metavar="PX"),
    "balance": Field("patch mode: class (each class equally often) or none (as the pixels are)"),
    "hard_negatives": Field("point data, patch mode: a first detector run; its false positives on the training "
                            "images become extra background patches (hard-negative mining)", metavar="RUN_DIR"),
    "hard_fraction": Field("with --hard-negatives: the fraction of every batch drawn at those false positives",
                           metavar="FRACTION"),
    "radius": Field("point data: radius in px of the disc labelled around each centre", metavar="PX"),
    "target": Field("point data: disc (class 'centre' within --radius) or proximity (soft labels 1/(1+d^2/2) within "
                    "--radius of the nearest centre, as SC-CNN)"),
    "border_weight": Field("dense mode: w0 of U-Net's loss weights on the borders between objects (10 in the "
                           "paper; 0: off)", metavar="W0"),
    "border_sigma": Field("dense mode: width in px (sigma) of those border weights", metavar="PX"),
    "epochs": Field("training epochs, each of --samples-per-epoch patches or tiles", metavar="EPOCHS"),
    "samples_per_epoch": Field("patches (patch mode, default 20000) or tiles (dense mode, default 400) per epoch",
                               metavar="N"),
    "batch_size": Field("patches (default 128) or tiles (dense mode, default 8) per step", metavar="N"),
    "augment": Field("flips=1,rot90=1,elastic=PX,intensity=X,colour=X (colour: per channel, for stains; or none)",
                     metavar="SPEC"),
    "select_metric": Field("validation metric that picks the checkpoint (detection_f1: point data)"),
}

BY_CLASS = {"TrainConfig": CLASSIFY, "SegmentConfig": SEGMENT}


def field_help(config_class: type, name: str) -> Field | None:
    """The entry of field `name` of `config_class` (its own, a base class's, or COMMON's); None when there is none."""
    for cls in config_class.__mro__:
        if name in BY_CLASS.get(cls.__name__, {}):
            return BY_CLASS[cls.__name__][name]
    return COMMON.get(name)
