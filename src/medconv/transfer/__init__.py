"""Transfer learning: backbones and weights, feature extraction, fine-tuning, taxonomies."""
