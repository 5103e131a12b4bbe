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
