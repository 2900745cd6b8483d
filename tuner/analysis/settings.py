"""The report's opening: the run's settings, what its FID is, and a warning when nothing is healthy.

The settings come from the experiment's search-spec.json (`frames.recorded_spec`) and, where the
trials themselves say more (their datasets, their epochs), from the trials frame. The feature
network that defines the FID is identified from the local cache (`feature_net_identity`), which
needs each training set on this machine; without it the report says so instead of guessing.
"""

from dataclasses import dataclass

import pandas as pd

from models.errors import UserInputError
from tuner.analysis.ranking import HEALTH_ORDER, no_healthy_warning

HEALTHY = HEALTH_ORDER[0]  # the first health group: the only label whose samples a user can trust
METRIC = "FID in gantune's FeatureNet-128 space; not comparable with Inception FIDs"


@dataclass
class DatasetFacts:
    """What this machine can tell about one training set: its size and the feature net behind its FID."""
    name: str
    images: int | None  # the full training split; None when it cannot be loaded here
    identity: dict | None  # models.evaluation.features.feature_net_identity, None when unknown

    @property
    def num_classes(self) -> int | None:
        """The classes its net tells apart; None without a net here or for a set without classes."""
        if not self.identity or self.identity["task"] != "classes":
            return None
        return self.identity["arch"]["num_classes"]


def dataset_facts(name: str, spec: dict) -> DatasetFacts:
    """The training split as the evaluator loads it (the whole split, whatever --limit trained on),
    with the data options the spec recorded (image size, IDX files)."""
    from models.data import USER_DATA_OPTIONS, load_dataset
    from models.evaluation.features import feature_net_identity

    options = {k: spec.get(k) for k in USER_DATA_OPTIONS}
    try:
        train = load_dataset(name, spec.get("data_dir"), train=True, download=False, **options)
    except (UserInputError, OSError, RuntimeError, ValueError):
        return DatasetFacts(name, None, None)
    return DatasetFacts(name, len(train), feature_net_identity(train) if train.is_image else None)


def datasets_of(trials: pd.DataFrame, spec: dict) -> list[str]:
    """The datasets the trials trained on, else the ones the spec names."""
    found = trials["dataset"].dropna().unique().tolist() if "dataset" in trials else []
    return sorted(found) or list(spec.get("datasets") or [])


def _values(trials: pd.DataFrame, column: str) -> str:
    values = sorted(trials[column].dropna().unique()) if column in trials else []
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values)


def training_images(spec: dict, facts: dict[str, DatasetFacts]) -> str:
    limit = spec.get("limit")
    parts = []
    for name, fact in facts.items():
        if fact.images is None:
            parts.append(f"{name}: {limit:,} (--limit)" if limit else f"{name}: all of its training split")
        elif limit and limit < fact.images:
            parts.append(f"{name}: {limit:,} of {fact.images:,} (--limit)")
        else:
            parts.append(f"{name}: all {fact.images:,}")
    return "; ".join(parts)


def feature_net_line(fact: DatasetFacts) -> str:
    if fact.identity is None:
        return (f"{fact.name}: not identified (its training split or cached feature net is not on this "
                "machine)")
    identity = fact.identity
    task = ("test accuracy" if identity["task"] == "classes" else
            "no classes, so trained to tell 4 rotations apart; test accuracy")
    return (f"{fact.name}: {task} {identity['test_accuracy']:.2%}, weights sha256 "
            f"{identity['weights_sha256'][:16]}, trained on images sha256 {identity['data_sha256'][:16]}")


def settings_table(spec: dict, trials: pd.DataFrame, facts: dict[str, DatasetFacts]) -> pd.DataFrame:
    """One row per run setting; the spec's values, the trials' where they are the truth."""
    spent = float(trials["epochs_run"].sum()) if "epochs_run" in trials else 0.0
    budget = spec.get("budget_trial_epochs")
    budget_text = f" of a budget of {budget:g}" if budget is not None else " (no budget)" if spec else ""
    early_stop = spec.get("early_stop")
    rows = [
        ("space", f"{spec.get('space', 'unknown')} (model: {spec.get('trainer') or spec.get('model', 'unknown')})"),
        ("dataset(s)", ", ".join(facts) or "unknown"),
        ("training images", training_images(spec, facts) or "unknown"),
        ("epochs per trial", _values(trials, "epochs") or str(spec.get("epochs", "unknown"))),
        ("evaluation samples", f"{spec['eval_samples']:,}" if spec.get("eval_samples") else "unknown"),
        ("trials", str(len(trials))),
        ("trial-epochs", f"{spent:g} spent{budget_text}"),
        ("early stopping", "unknown" if early_stop is None else
         f"ASHA ({spec.get('asha')}, grace {spec.get('grace_period')}, reduction {spec.get('reduction_factor')}) "
         f"and the collapse stopper (patience {spec.get('collapse_patience')}, warm-up "
         f"{'a third of the epochs' if spec.get('collapse_warmup') is None else spec['collapse_warmup']})"
         if early_stop else "off: every trial runs to the end"),
        ("pinned hyperparameters", ", ".join(f"{k}={v}" for k, v in (spec.get("fixed") or {}).items()) or "none"),
        ("seed", str(spec.get("seed", "unknown"))),
        ("metric", METRIC),
    ]
    rows += [("feature net", feature_net_line(fact)) for fact in facts.values()]
    return pd.DataFrame(rows, columns=["setting", "value"])


def no_healthy_blocks(trials: pd.DataFrame) -> list:
    """The search summary's one-sentence warning (what to try) when no trial is healthy."""
    warning = no_healthy_warning(trials)
    return [("p", warning)] if warning else []


def settings_blocks(spec: dict, trials: pd.DataFrame, facts: dict[str, DatasetFacts]) -> list:
    blocks = [("h2", "Run settings")]
    if not spec:
        blocks.append(("p", "This experiment has no search-spec.json (it was not started by tuner/run.py or "
                            "tuner.build): the settings below come from the trials alone."))
    return blocks + [("table", settings_table(spec, trials, facts))]
