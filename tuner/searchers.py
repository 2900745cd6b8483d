"""The two searchers: Optuna's TPE for the spaces, and a fixed list of configs for the seed grid.

Ray's grid_search multiplies keys; the seed grid is instead a list of whole configs whose keys
differ (GANs have a loss and z_dim, VAEs a latent dim), which no product of keys can express,
and BasicVariantGenerator's points_to_evaluate needs every key declared in a param_space.

Pinned hyperparameters (SearchSpec.fixed) reach a define-by-run space through `PinnedTrial`: its
`suggest_*` hands a pinned name its value without asking Optuna, so TPE never models it.
"""

import pickle

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch


class PinnedTrial:
    """An Optuna trial whose suggest_* returns the pinned value for a pinned name, and asks the
    wrapped trial for every other name."""

    def __init__(self, trial, pinned: dict):
        self._trial, self._pinned = trial, pinned

    def __getattr__(self, attribute: str):
        method = getattr(self._trial, attribute)
        if not attribute.startswith("suggest_"):
            return method

        def suggest(name, *args, **kwargs):
            return self._pinned[name] if name in self._pinned else method(name, *args, **kwargs)
        return suggest


def pinned_space(space, base: dict, fixed: dict, constants: dict, trial) -> dict:
    """The config of one trial: `base` (defaults a space may override), what `space` suggests and
    returns, then the pinned hyperparameters, then the run's constants (dataset, epochs, seed).
    A module-level function, so a `functools.partial` of it pickles with the searcher for --resume."""
    return {**base, **(space(PinnedTrial(trial, fixed)) or {}), **fixed, **constants}


def tpe_searcher(space, seed: int, random_trials: int, start_points: list[dict] = ()) -> OptunaSearch:
    """TPE over a define-by-run space, minimising each trial's `searcher_objective` (see
    tuner/objective.py): first the `start_points` (Optuna's enqueue_trial), then at random until
    `random_trials` trials have finished, then from its model."""
    import optuna
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=random_trials)
    return OptunaSearch(space=space, metric="searcher_objective", mode="min", sampler=sampler,
                        points_to_evaluate=[dict(p) for p in start_points] or None)


class FixedConfigs(Searcher):
    def __init__(self, configs: list[dict], metric: str = "objective", mode: str = "min"):
        super().__init__(metric=metric, mode=mode)
        self.configs = [dict(c) for c in configs]
        self.next_index = 0

    def suggest(self, trial_id: str) -> dict | None:
        if self.next_index >= len(self.configs):
            return Searcher.FINISHED
        self.next_index += 1
        return dict(self.configs[self.next_index - 1])

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        """Nothing to learn: the list is fixed."""

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump({"configs": self.configs, "next_index": self.next_index}, f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            state = pickle.load(f)
        self.configs, self.next_index = state["configs"], state["next_index"]
