"""`--space configs --configs FILE`: a YAML or JSON list of configurations, each run once to the end
with no early stopping; a bad file is one line naming it. On a real local Ray: a two-configuration
file runs both trials to the end, evaluated and ranked, and a toy search (toy2d_ring, MLP GAN)
trains, is scored by the toy evaluator and ranks."""

import json
from pathlib import Path

import pytest
from PIL import Image

from models.errors import UserInputError
from tests.conftest import REPO, read_result_json
from tuner.analysis import load_trials
from tuner.objective import REPORTED_REASONS
from tuner.run import build_parser, main, spec_from_args

EXPERIMENTS = sorted((REPO / "experiments").glob("*.yaml"))


def spec_of(*flags):
    return spec_from_args(build_parser().parse_args(["--space", "configs", *flags]))


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_a_configs_file_becomes_trial_configs_that_run_to_the_end(tmp_path):
    path = write(tmp_path, "two.yaml", "- {loss: wgan, lr_g: 5e-5, n_critic: 5}\n- loss: hinge\n  z_dim: 32\n")
    spec = spec_of("--configs", path, "--name", "x", "--storage-path", str(tmp_path))
    assert spec.trial_configs == ({"loss": "wgan", "lr_g": 5e-5, "n_critic": 5}, {"loss": "hinge", "z_dim": 32})
    assert not spec.early_stop  # no ASHA, no collapse stopper: a comparison runs every configuration
    json_path = write(tmp_path, "two.json", json.dumps([{"model": "vae", "regularized": True, "dropout": 0.3}]))
    assert spec_of("--configs", json_path, "--name", "x").trial_configs == (
        {"model": "vae", "regularized": True, "dropout": 0.3},)


@pytest.mark.parametrize("experiment", EXPERIMENTS, ids=lambda path: path.stem)
def test_the_labs_comparisons_are_valid_configs_files(experiment):
    toy = ["--dataset", "toy2d_semicircles"] if "toy2d" in experiment.read_text() else []
    spec = spec_of("--configs", str(experiment), "--name", "x", *toy)
    assert len(spec.trial_configs) == 2 and not spec.early_stop


@pytest.mark.parametrize("text,message", [
    (None, "cannot be read"),
    ("- {loss: bce\n", "not valid YAML"),
    ("", "expected a list of configurations, found nothing"),
    ("loss: bce\n", "expected a list of configurations, found a dict"),
    ("- {loss: bce}\n- hinge\n", "configuration 2 is a str, not a mapping"),
    ("- {loss: bce}\n- {z-dim: 32}\n", "configuration 2: config: unknown field(s) z-dim"),
    ("- {loss: bce, z_dim: -1}\n", "configuration 1: z_dim: must be > 0"),
    ("- {loss: bce, epochs: 30}\n", "configuration 1: epochs: run settings, not hyperparameters"),
])
def test_a_bad_configs_file_is_one_error_naming_the_file(tmp_path, text, message):
    path = str(tmp_path / "bad.yaml") if text is None else write(tmp_path, "bad.yaml", text)
    with pytest.raises(UserInputError) as caught:
        spec_of("--configs", path, "--name", "x")
    assert str(caught.value).startswith(f"configs: {path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_bad_json_names_the_file_and_the_place(tmp_path):
    path = write(tmp_path, "bad.json", '[{"loss": "bce",}]')
    with pytest.raises(UserInputError, match=r"^configs: .*bad\.json: not valid JSON \(.* line 1, column 17\)$"):
        spec_of("--configs", path, "--name", "x")


def test_configs_and_space_configs_come_together(tmp_path):
    path = write(tmp_path, "one.yaml", "- {loss: bce}\n")
    with pytest.raises(UserInputError, match=r"^space: 'configs' runs trial_configs \(--configs FILE\)"):
        spec_from_args(build_parser().parse_args(["--configs", path, "--name", "x"]))


def test_a_toy_set_is_refused_to_what_cannot_train_points(tmp_path):
    """The VAE and the DCGAN take images: on a 2-D set every trial would fail inside Ray."""
    with pytest.raises(UserInputError, match="^dataset: toy2d_ring holds 2-D points.*--fixed arch=mlp$"):
        spec_from_args(build_parser().parse_args(["--space", "smoke", "--dataset", "toy2d_ring", "--name", "x"]))
    path = write(tmp_path, "toy.yaml", "- {arch: mlp}\n- {model: vae}\n")
    with pytest.raises(UserInputError, match=r"^configs: .*toy\.yaml: configuration 2: toy2d_semicircles holds 2-D"):
        spec_of("--configs", path, "--dataset", "toy2d_semicircles", "--name", "x")


def reports(experiment: Path) -> dict:
    """trial id -> (its config, its reports)."""
    found = {}
    for trial in experiment.glob("train_trial_*"):
        rows = read_result_json(trial / "result.json")
        found[rows["trial_id"].iloc[0]] = (json.loads((trial / "params.json").read_text()), rows)
    return found


@pytest.mark.slow
def test_two_configurations_run_to_the_end_on_a_local_ray(local_ray, data_dir, tmp_path):
    configs = write(tmp_path, "pair.yaml", "- {loss: hinge, z_dim: 16}\n- {loss: wgan, z_dim: 16}\n")
    main(["--space", "configs", "--configs", configs, "--fixed", "width=8", "--epochs", "2", "--limit", "256",
          "--eval-samples", "128", "--data-dir", str(data_dir), "--storage-path", str(tmp_path), "--name", "pair"])
    trials = reports(tmp_path / "pair")
    assert sorted(config["loss"] for config, _ in trials.values()) == ["hinge", "wgan"]
    for config, rows in trials.values():
        assert config["width"] == 8 and config["epochs"] == 2
        # 8 steps of a width-8 DCGAN draw noise, flagged diverged at epoch 1: with early stopping the
        # stopper would end the trial there; here it trains and is evaluated to the last epoch
        assert rows["epoch"].tolist() == [1.0, 2.0] and rows["fid"].gt(0).all()
        assert rows["end_reason"].iloc[-1] in REPORTED_REASONS
    ranked = load_trials(tmp_path / "pair")
    assert sorted(ranked["rank"]) == [1, 2] and set(ranked["trial_id"]) == set(trials)
    assert ranked["epochs_run"].tolist() == [2.0, 2.0] and ranked["best_fid"].notna().all()


@pytest.mark.slow
def test_a_toy_search_is_scored_by_the_toy_evaluator_and_ranked(local_ray, tmp_path):
    main(["--space", "smoke", "--dataset", "toy2d_ring", "--fixed", "arch=mlp", "--num-samples", "2",
          "--epochs", "2", "--limit", "1024", "--eval-samples", "128", "--storage-path", str(tmp_path),
          "--name", "ring"])
    trials = reports(tmp_path / "ring")
    assert len(trials) == 2
    for config, rows in trials.values():
        assert config["dataset"] == "toy2d_ring" and config["arch"] == "mlp"
        assert rows["sliced_wasserstein"].gt(0).all() and rows["coverage"].between(0, 8).all()
        assert rows["high_quality_share"].between(0, 1).all() and rows["balance"].between(0, 1).all()
    ranked = load_trials(tmp_path / "ring")
    assert sorted(ranked["rank"]) == [1, 2] and ranked["best_fid"].notna().all()
    for path in ranked["path"]:  # each report's picture: generated points over real ones, not a 2-pixel-wide grid
        picture = sorted((sorted(Path(path).glob("checkpoint_*"))[-1] / "grids").glob("epoch_*.png"))[-1]
        with Image.open(picture) as image:
            assert min(image.size) >= 200 and len(set(image.convert("RGB").getdata())) > 10, image.size
