"""Evaluation of generated images: FID, KID, k-NN fidelity, diversity and memorisation statistics,
and a mode-collapse / divergence / memorisation detector; the 2-D toy sets have their own (toy.py)."""

from models.evaluation.collapse import (blank_fraction, class_histogram, coverage, detect_collapse, history_signals,
                                        kl_to_labels, mean_pairwise_distance, normalized_entropy, roughness)
from models.evaluation.evaluator import Evaluator
from models.evaluation.features import FeatureNet, data_checksum, load_or_train_feature_net
from models.evaluation.fid import feature_statistics, frechet_distance, kid, require_enough_samples
from models.evaluation.toy import ToyEvaluator
from models.toy_data import TOY_SETS


def evaluator_for(dataset: str, data_dir=None, n_samples: int = 2000, **data_options):
    """The evaluator a trial on `dataset` gets: ToyEvaluator for the 2-D toy sets (points, no
    classifier), else the image Evaluator (feature net, FID). `data_options`: load_dataset's
    image_size, idx_images and idx_labels."""
    if dataset in TOY_SETS:
        return ToyEvaluator.for_dataset(dataset, n_samples=n_samples)
    return Evaluator.for_dataset(dataset, data_dir, n_samples=n_samples, **data_options)


__all__ = [
    "Evaluator", "FeatureNet", "ToyEvaluator", "blank_fraction", "class_histogram", "coverage", "data_checksum",
    "detect_collapse", "evaluator_for",
    "feature_statistics", "frechet_distance", "history_signals", "kid", "kl_to_labels",
    "load_or_train_feature_net", "mean_pairwise_distance", "normalized_entropy", "roughness",
    "require_enough_samples",
]
