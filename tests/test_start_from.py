"""--start-from: TPE evaluates known recipes (or a trial's params.json) first, whole, then searches."""

import json

import pytest

from models.config import GANConfig
from models.errors import UserInputError
from search_spaces.recipes import RECIPES
from tuner.build import search_function, start_points
from tuner.run import build_parser, spec_from_args
from tuner.searchers import tpe_searcher
from tuner.spec import SearchSpec


def from_flags(*flags) -> SearchSpec:
    return spec_from_args(build_parser().parse_args(list(flags)))


def suggested(spec: SearchSpec, n: int) -> list[dict]:
    searcher = tpe_searcher(search_function(spec), spec.seed, spec.random_trials, start_points(spec))
    searcher.set_search_properties("searcher_objective", "min", {})
    return [searcher.suggest(f"t{i}") for i in range(n)]


def test_every_recipe_is_a_valid_whole_config():
    for name, recipe in RECIPES.items():
        config = GANConfig.from_dict({k: v for k, v in recipe.config.items() if k != "model"})
        assert recipe.source and config.loss == recipe.config["loss"], name


def test_the_recipes_are_tried_first_and_whole_then_tpe_samples():
    spec = from_flags("--start-from", "sngan-ema", "labs-hinge", "--fixed", "arch=dcgan", "width=64")
    first, second, *rest = suggested(spec, 6)
    searched = ("loss", "z_dim", "lr_g", "lr_d", "beta1", "beta2", "n_critic", "batch_size", "d_norm", "ema_decay",
                "ema_start", "lr_decay")
    sngan = GANConfig.from_dict({k: v for k, v in RECIPES["sngan-ema"].config.items() if k != "model"}).to_dict()
    assert {k: first[k] for k in searched} == {k: sngan[k] for k in searched}
    labs = GANConfig.from_dict({"loss": "hinge", "z_dim": 32}).to_dict()  # the rest from the defaults, not drawn
    assert {k: second[k] for k in searched if k in second} == {k: labs[k] for k in searched if k in second}
    assert (second["lr_g"], second["batch_size"], second["d_norm"], second["ema_decay"]) == (2e-4, 64, "none", 0.0)
    assert all(c["model"] == "gan" and c["width"] == 64 for c in (first, second, *rest))
    assert len({(c["lr_g"], c["lr_d"]) for c in rest}) == len(rest)  # then sampled, not repeated


def test_a_trials_params_json_starts_a_search_without_its_run_settings(tmp_path):
    params = {"model": "gan", "dataset": "mnist", "epochs": 3, "seed": 7, "loss": "bce", "z_dim": 64,
              "lr_g": 1e-3, "lr_d": 3e-4, "batch_size": 32}
    (tmp_path / "params.json").write_text(json.dumps(params))
    spec = from_flags("--start-from", str(tmp_path / "params.json"), "--epochs", "5")
    assert spec.start_from == ({k: params[k] for k in ("model", "loss", "z_dim", "lr_g", "lr_d", "batch_size")},)
    [first] = suggested(spec, 1)
    assert (first["loss"], first["z_dim"], first["lr_g"], first["lr_d"], first["batch_size"]) == ("bce", 64, 1e-3, 3e-4, 32)
    assert (first["dataset"], first["epochs"], first["seed"]) == ("fashion_mnist", 5, 0)  # this run's, not the file's


def test_a_start_point_for_both_families_names_its_model():
    spec = from_flags("--model", "both", "--start-from", "labs-hinge")
    [first] = suggested(spec, 1)
    assert first["model"] == "gan" and first["loss"] == "hinge" and first["z_dim"] == 32


@pytest.mark.parametrize("values,message", [
    (dict(start_from=({"loss": "l2"},)), "start-from: loss: 'l2' is not one of"),
    (dict(start_from=({"epochs": 3},)), "start-from: epochs: run settings"),
    (dict(model="vae", start_from=(RECIPES["labs-hinge"].config,)), "start-from: a point for model 'gan' cannot"),
    (dict(space="seed-grid", start_from=({"loss": "bce"},)), "start-from: --space seed-grid runs a fixed list"),
])
def test_a_bad_start_point_is_one_error_naming_the_flag(values, message):
    with pytest.raises(UserInputError, match=f"^{message}"):
        SearchSpec(**values)


def test_a_start_file_that_is_missing_or_not_an_object_is_refused(tmp_path):
    with pytest.raises(UserInputError, match="^start-from: 'nope' is neither a recipe"):
        from_flags("--start-from", "nope")
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(UserInputError, match="holds a JSON list; expected an object"):
        from_flags("--start-from", str(tmp_path / "list.json"))
