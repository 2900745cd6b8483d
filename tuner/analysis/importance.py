"""Hyperparameter importance with Optuna's evaluators over the experiment's finished trials.

The trials are added to an in-memory Optuna study (`optuna.trial.create_trial`), so the same
code serves TPE searches and grid searches. Distributions are read off the values the trials
actually took (PED-ANOVA, Optuna's default evaluator, needs no more): strings, booleans and few-valued numbers are categorical; positive floats that span
more than a decade are log-uniform; other numbers uniform over their observed range.
"""

import math
import warnings

import optuna
import pandas as pd

from tuner.objective import NON_HYPERPARAMETER_KEYS

MIN_TRIALS = 4  # fewer finished trials than this cannot separate one parameter's effect from another's
TARGETS = {"objective": "best_objective", "collapse": "collapsed_fraction"}
# Optuna's default evaluator (fANOVA would need scikit-learn): how much each parameter matters for
# landing in the best (lowest-target) quantile of trials.
EVALUATOR = optuna.importance.PedAnovaImportanceEvaluator
EVALUATOR_NAME = "PED-ANOVA"


def distribution(values: pd.Series):
    unique = values.dropna().unique()
    if values.dtype == object or values.dtype == bool or len(unique) <= 4:
        return optuna.distributions.CategoricalDistribution(sorted(unique.tolist(), key=str))
    low, high = float(unique.min()), float(unique.max())
    return optuna.distributions.FloatDistribution(low, high, log=low > 0 and high / low > 10)


def varied_hyperparameters(trials: pd.DataFrame, config_keys) -> list[str]:
    """Hyperparameters (config keys but NON_HYPERPARAMETER_KEYS) that took more than one value among these trials."""
    return [k for k in config_keys if k in trials and k not in NON_HYPERPARAMETER_KEYS
            and trials[k].dropna().astype(str).nunique() > 1]


def importances(trials: pd.DataFrame, config_keys, target: str) -> tuple[pd.Series | None, str]:
    """(importance per parameter, "") or (None, why it cannot be computed)."""
    column = TARGETS[target]
    usable = trials[trials[column].notna() & trials[column].map(lambda v: math.isfinite(float(v)))]
    params = varied_hyperparameters(usable, config_keys)
    if len(usable) < MIN_TRIALS:
        return None, f"only {len(usable)} trial(s) with a {column}; importance needs at least {MIN_TRIALS}"
    if not params:
        return None, "no hyperparameter took more than one value"
    if usable[column].nunique() < 2:
        return None, f"every trial has the same {column} ({usable[column].iloc[0]:g}): nothing to explain"
    distributions = {k: distribution(usable[k]) for k in params}
    study = optuna.create_study()
    for _, row in usable.iterrows():
        present = {k: (row[k].item() if hasattr(row[k], "item") else row[k]) for k in params if pd.notna(row[k])}
        study.add_trial(optuna.trial.create_trial(
            params=present, distributions={k: distributions[k] for k in present}, value=float(row[column])))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # PED-ANOVA's reminder that low targets are "good"
            scores = optuna.importance.get_param_importances(study, evaluator=EVALUATOR())
    except (RuntimeError, ValueError) as err:  # e.g. no parameter shared by every trial
        return None, f"Optuna could not compute it ({err})"
    if not scores:
        return None, "no parameter is shared by every trial (conditional parameters are left out)"
    return pd.Series(scores, name=f"importance for {target}"), ""


def all_importances(trials: pd.DataFrame, config_keys) -> tuple[dict[str, pd.Series], dict[str, str]]:
    """Per model family and target: the importances, or the reason there are none."""
    found, missing = {}, {}
    for model in sorted(trials["model"].dropna().unique()):
        for target in TARGETS:
            scores, why = importances(trials[trials["model"] == model], config_keys, target)
            key = f"{model.upper()}: {target}"
            if scores is None:
                missing[key] = why
            else:
                found[key] = scores
    return found, missing
