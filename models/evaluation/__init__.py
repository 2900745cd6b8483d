"""Evaluation of generated images: FID, KID, k-NN fidelity, diversity and memorisation statistics,
and a mode-collapse / divergence / memorisation detector."""

from models.evaluation.collapse import (blank_fraction, class_histogram, coverage, detect_collapse, history_signals,
                                        kl_to_labels, mean_pairwise_distance, normalized_entropy, roughness)
from models.evaluation.evaluator import Evaluator
from models.evaluation.features import FeatureNet, data_checksum, load_or_train_feature_net
from models.evaluation.fid import feature_statistics, frechet_distance, kid, require_enough_samples

__all__ = [
    "Evaluator", "FeatureNet", "blank_fraction", "class_histogram", "coverage", "data_checksum", "detect_collapse",
    "feature_statistics", "frechet_distance", "history_signals", "kid", "kl_to_labels",
    "load_or_train_feature_net", "mean_pairwise_distance", "normalized_entropy", "roughness",
    "require_enough_samples",
]
