"""The two searchers: Optuna's TPE for the spaces, and a fixed list of configs for the seed grid.

Ray's grid_search multiplies keys; the seed grid is instead a list of whole configs whose keys
differ (GANs have a loss and z_dim, VAEs a latent dim), which no product of keys can express,
and BasicVariantGenerator's points_to_evaluate needs every key declared in a param_space.
"""

import pickle

from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch


def tpe_searcher(space, seed: int, random_trials: int) -> OptunaSearch:
    """TPE over a define-by-run space, minimising each trial's `searcher_objective` (see
    tuner/objective.py), sampling at random until `random_trials` trials have finished."""
    import optuna
    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=random_trials)
    return OptunaSearch(space=space, metric="searcher_objective", mode="min", sampler=sampler)


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
