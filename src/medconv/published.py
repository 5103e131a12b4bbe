"""Published test-set results to compare against (MedMNIST v2, Yang et al., Sci. Data 10:41, 2023, Table 3)."""

# dataset -> method -> (AUC, ACC)
MEDMNIST_V2 = {
    "breastmnist": {
        "ResNet-18 (28)": (0.901, 0.863), "ResNet-18 (224)": (0.891, 0.833),
        "ResNet-50 (28)": (0.857, 0.812), "ResNet-50 (224)": (0.866, 0.842),
        "auto-sklearn": (0.836, 0.803), "AutoKeras": (0.871, 0.831), "Google AutoML Vision": (0.919, 0.861),
    },
    "pneumoniamnist": {
        "ResNet-18 (28)": (0.944, 0.854), "ResNet-18 (224)": (0.956, 0.864),
        "ResNet-50 (28)": (0.948, 0.854), "ResNet-50 (224)": (0.962, 0.884),
        "auto-sklearn": (0.942, 0.855), "AutoKeras": (0.947, 0.878), "Google AutoML Vision": (0.991, 0.946),
    },
    "adrenalmnist3d": {  # 28^3 volumes
        "ResNet-18 + 2.5D": (0.718, 0.772), "ResNet-18 + 3D": (0.827, 0.721), "ResNet-18 + ACS": (0.839, 0.754),
        "ResNet-50 + 2.5D": (0.732, 0.763), "ResNet-50 + 3D": (0.828, 0.745), "ResNet-50 + ACS": (0.828, 0.758),
        "auto-sklearn": (0.828, 0.802), "AutoKeras": (0.804, 0.705),
    },
}


def best_published(dataset: str) -> tuple[float, float]:
    """The best published AUC and the best published ACC (possibly from different methods)."""
    rows = MEDMNIST_V2[dataset].values()
    return max(a for a, _ in rows), max(c for _, c in rows)


MEDMNIST_PROTOCOL = "MedMNIST v2 (Yang et al. 2023, Table 3): the official test split"
ISBI2012 = [  # as Ronneberger et al. 2015 (Table 1) list them: warping, Rand and pixel error
    ("U-Net (Ronneberger et al. 2015, Table 1)", 0.000353, 0.0382, 0.0611),
    ("IDSIA sliding-window DNN (Ciresan et al. 2012, 65 or 95 px windows)", 0.000420, 0.0504, 0.0613),
    ("second human observer (same table)", 0.000005, 0.0021, 0.0010)]
ISBI2012_PROTOCOL = ("the challenge's test stack (the 30 slices of isbi2012_em/test, whose labels are not public), "
                     "scored by the organisers under the 2012 definitions on raw maps (no thinning)")
SC_CNN_DETECTION = {"precision": 0.781, "recall": 0.823, "f1": 0.802}  # Sirinukunwattana et al. 2016
SC_CNN_NUCLEI = {"weighted_f1": 0.784, "auc": 0.917}  # same paper, softmax CNN + neighbouring ensemble predictor


def published_rows(dataset: str, kind: str) -> tuple[str, list[tuple[str, dict[str, float]]]]:
    """(protocol, [(method, {metric: value})]) published for `dataset` and a run of `kind` (classification,
    segmentation or detection); ("", []) when none is known. Metric names are those of medconv's metrics files."""
    if dataset in MEDMNIST_V2 and kind == "classification":
        return MEDMNIST_PROTOCOL, [(m, {"auc": auc, "acc": acc}) for m, (auc, acc) in MEDMNIST_V2[dataset].items()]
    if dataset == "isbi2012" and kind == "segmentation":
        # Rand error only: the run's at the threshold chosen on validation (the published pixel error is 1 - the
        # best F over thresholds on the test slices, a choice made on test labels)
        return ISBI2012_PROTOCOL, [(m, {"at_threshold.rand_error": r}) for m, _, r, _ in ISBI2012]
    if dataset == "crchistophenotypes" and kind == "detection":
        return "2-fold cross-validation over the 100 images", [("SC-CNN (Sirinukunwattana et al. 2016)",
                                                                SC_CNN_DETECTION)]
    if dataset == "crchistophenotypes" and kind == "classification":
        return ("nucleus typing, 2-fold cross-validation over the 100 images",
                [("softmax CNN + NEP (Sirinukunwattana et al. 2016)", SC_CNN_NUCLEI)])
    if dataset == "msd_hippocampus" and kind == "segmentation":
        return ("the challenge's own test cases (labels not public): context, not comparable case for case",
                [("nnU-Net (Isensee et al. 2021), about", {"dice_anterior": 0.90, "dice_posterior": 0.89})])
    return "", []
