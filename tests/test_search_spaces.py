"""Search spaces: conditional parameters appear only when they apply; the seed grid is exact."""

import optuna
import pytest
from ray.tune.search.optuna import OptunaSearch

from models.config import GANConfig, VAEConfig
from models.losses import LOSSES
from search_spaces import SPACES, seed_grid
from tuner.objective import COLLAPSE_PENALTY, DIVERGED_OBJECTIVE, decide_end, objective, searcher_objective
from tuner.searchers import tpe_searcher

def conditional_fields() -> dict:
    """Each loss-specific field: the loss it belongs to, as the registry declares it."""
    return {name: entry.name for entry in LOSSES.values() for name in entry.specific}


def sample_configs(space, n=60, seed=0):
    searcher = OptunaSearch(space=space, metric="objective", mode="min", seed=seed)
    searcher.set_search_properties("objective", "min", {})
    return [searcher.suggest(f"t{i}") for i in range(n)]


@pytest.mark.parametrize("key", [("full", "gan"), ("smoke", "gan")])
def test_conditional_gan_parameters_appear_only_with_their_loss(key):
    configs = sample_configs(SPACES[key])
    assert {c["loss"] for c in configs} == set(LOSSES)
    assert conditional_fields() == {"clip_value": "wgan", "gp_lambda": "wgan-gp", "real_label": "bce"}
    for config in configs:
        for param, loss in conditional_fields().items():
            assert (param in config) == (config["loss"] == loss), config
        GANConfig.from_dict({k: v for k, v in config.items() if k not in ("model", "dataset")})


def test_full_gan_space_ranges():
    configs = sample_configs(SPACES[("full", "gan")], n=100)
    assert all(5e-5 <= c["lr_g"] <= 5e-3 and 5e-5 <= c["lr_d"] <= 5e-3 for c in configs)
    assert min(c["lr_g"] for c in configs) < 2e-4 and max(c["lr_g"] for c in configs) > 2e-3
    assert {c["z_dim"] for c in configs} == {32, 64, 128} and {c["arch"] for c in configs} == {"dcgan", "mlp"}
    assert {c["n_critic"] for c in configs} == {1, 2, 3, 4, 5}
    assert all(0.005 <= c["clip_value"] <= 0.1 for c in configs if c["loss"] == "wgan")
    assert all(1.0 <= c["gp_lambda"] <= 20.0 for c in configs if c["loss"] == "wgan-gp")
    assert not any("beta1" in c or "beta2" in c for c in configs if c["loss"] == "wgan")  # RMSprop has no betas


def test_full_gan_space_searches_the_quality_levers():
    configs = sample_configs(SPACES[("full", "gan")], n=120)
    adam = [c for c in configs if c["loss"] != "wgan"]
    assert {c["beta2"] for c in adam} == {0.9, 0.999} and all(0 <= c["beta1"] <= 0.9 for c in adam)
    assert {c["width"] for c in configs} == {32, 64, 128} and {c["batch_size"] for c in configs} == {32, 64, 128}
    assert {c["ema_decay"] for c in configs} == {0.0, 0.99, 0.999, 0.9999}
    assert all(("ema_start" in c) == (c["ema_decay"] > 0) for c in configs)
    assert {c["ema_start"] for c in configs if "ema_start" in c} == {0.0, 0.5, 1.0, 2.0}
    assert {c["lr_decay"] for c in configs} == {"none", "linear"}
    assert {c["d_norm"] for c in configs if "d_norm" in c} == {"none", "batch", "spectral", "layer"}
    assert not any("d_norm" in c for c in configs if c["loss"] == "wgan-gp")  # batch norm breaks its penalty
    for c in configs:
        GANConfig.from_dict({k: v for k, v in c.items() if k != "model"})


def test_smoke_gan_space_stays_narrow():
    configs = sample_configs(SPACES[("smoke", "gan")], n=20)
    assert all(c["width"] == 16 and c["arch"] == "dcgan" for c in configs)
    assert not any(k in c for c in configs for k in ("ema_decay", "d_norm", "lr_decay"))


def test_both_space_yields_valid_configs_of_each_family():
    configs = sample_configs(SPACES[("full", "both")], n=40)
    assert {c["model"] for c in configs} == {"gan", "vae"}
    for c in configs:
        hyper = {k: v for k, v in c.items() if k != "model"}
        (GANConfig if c["model"] == "gan" else VAEConfig).from_dict(hyper)
        assert ("latent_dim" in c) == (c["model"] == "vae") and ("loss" in c) == (c["model"] == "gan")


def test_spaces_are_plain_functions_of_an_optuna_trial():
    trial = optuna.trial.FixedTrial({"loss": "wgan", "arch": "mlp", "z_dim": 32, "width": 32, "lr_g": 1e-4,
                                     "lr_d": 1e-4, "n_critic": 5, "clip_value": 0.02, "batch_size": 64,
                                     "d_norm": "spectral", "ema_decay": 0.999, "ema_start": 1.0,
                                     "lr_decay": "linear"})
    assert SPACES[("full", "gan")](trial) == {"model": "gan"}


def test_seed_grid_is_the_labs_grid():
    points = seed_grid(epochs=10)
    gans = [p for p in points if p["model"] == "gan"]
    vaes = [p for p in points if p["model"] == "vae"]
    assert len(gans) == 12 and len(vaes) == 6 and all(p["epochs"] == 10 for p in points)
    assert {(p["dataset"], p["loss"], p["z_dim"]) for p in gans} == {
        (d, loss, z) for d in ("mnist", "fashion_mnist") for loss in ("hinge", "bce") for z in (32, 64, 128)}
    assert {(p["dataset"], p["latent_dim"]) for p in vaes} == {
        (d, z) for d in ("mnist", "fashion_mnist") for z in (8, 16, 32)}


def test_collapsed_and_diverged_trials_always_lose():
    worst_healthy = objective(COLLAPSE_PENALTY * 0.99, collapsed=False, diverged=False)
    best_collapsed = objective(0.0, collapsed=True, diverged=False)
    assert worst_healthy < best_collapsed < objective(5.0, collapsed=False, diverged=True) == DIVERGED_OBJECTIVE
    assert objective(float("nan"), collapsed=False, diverged=False) == DIVERGED_OBJECTIVE


def test_searcher_learns_the_first_rung_unless_the_trial_ends_badly():
    assert searcher_objective(250.0, rung_collapsed=False, reason=None) == 250.0
    assert searcher_objective(250.0, rung_collapsed=False, reason="completed") == 250.0
    assert searcher_objective(250.0, rung_collapsed=True, reason=None) == 250.0 + COLLAPSE_PENALTY
    assert searcher_objective(250.0, rung_collapsed=False, reason="collapse") == 250.0 + COLLAPSE_PENALTY
    assert searcher_objective(250.0, rung_collapsed=False, reason="diverged") == DIVERGED_OBJECTIVE
    assert searcher_objective(float("nan"), rung_collapsed=False, reason=None) == DIVERGED_OBJECTIVE
    # a trial later stopped as collapsed ranks below every one that was not, whatever their FIDs
    assert searcher_objective(900.0, False, None) < searcher_objective(100.0, False, "collapse")


def test_end_reason_rule():
    assert decide_end(True, 0, 2, False) == "diverged"
    assert decide_end(False, 1, 2, False) is None
    assert decide_end(False, 2, 2, False) == "collapse"
    assert decide_end(False, 0, 2, True) == "completed"


def _x_space(trial):
    trial.suggest_float("x", 0.0, 1.0)


def _later_suggestions(random_trials: int) -> list[float]:
    """Suggestions 11-30 of a TPE search whose objective is x itself, fed back as each trial ends."""
    searcher = tpe_searcher(_x_space, seed=0, random_trials=random_trials)
    searcher.set_search_properties("objective", "min", {})
    xs = []
    for i in range(30):
        x = searcher.suggest(f"t{i}")["x"]
        searcher.on_trial_complete(f"t{i}", {"searcher_objective": x})
        xs.append(x)
    return xs[10:]


def test_tpe_models_the_results_after_its_random_trials():
    modelled, still_random = _later_suggestions(random_trials=5), _later_suggestions(random_trials=100)
    assert sorted(modelled)[10] < 0.2 < sorted(still_random)[10]
