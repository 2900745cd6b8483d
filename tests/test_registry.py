"""A loss added here, by one `register_loss` call and nothing else, is accepted by the config,
offered and trained by `models.train`, sampled by the GAN search space and trained by GANTrainer.
The architecture registry is what the config accepts. Unknown names are errors everywhere."""

import json
import math

import optuna
import pytest

from models import train as train_cli
from models.config import GANConfig
from models.errors import UserInputError
from models.gan_trainer import GANTrainer
from models.losses import LOSSES, Loss, LossParam, register_loss
from models.nets import ARCHS
from search_spaces.gan import gan_space

NAME = "least_squares"
d_loss_calls = []


def d_least_squares(real_logits, fake_logits, params):
    """LSGAN (Mao et al., 2017): D regresses real outputs to `ls_real_target` and fake ones to 0."""
    d_loss_calls.append(len(real_logits))
    return 0.5 * ((real_logits - params["ls_real_target"]) ** 2).mean() + 0.5 * (fake_logits ** 2).mean()


def g_least_squares(fake_logits):
    return 0.5 * ((fake_logits - 1) ** 2).mean()


@pytest.fixture
def least_squares():
    register_loss(Loss(NAME, d_least_squares, g_least_squares,
                       dict(lr=3e-4, optimizer="adam", betas=(0.5, 0.999), n_critic=1),
                       specific={"ls_real_target": LossParam(1.0, "LSGAN's target for real images",
                                                             search_range=(0.5, 1.0))}))
    d_loss_calls.clear()
    yield LOSSES[NAME]
    del LOSSES[NAME]


def test_the_config_accepts_it_with_its_defaults_and_fields(least_squares):
    config = GANConfig(loss=NAME)
    assert config.loss_params == {"ls_real_target": 1.0}
    assert (config.lr_g, config.optimizer, config.n_critic) == (3e-4, "adam", 1)
    assert GANConfig.from_dict({"loss": NAME, "ls_real_target": 0.8}).to_dict()["ls_real_target"] == 0.8
    with pytest.raises(UserInputError, match=f"ls_real_target: applies to loss {NAME} only"):
        GANConfig.from_dict({"loss": "hinge", "ls_real_target": 0.8})


def test_models_train_offers_and_trains_it(least_squares, data_dir, tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        train_cli.main(["--help"])
    assert done.value.code == 0
    help_text = capsys.readouterr().out
    assert NAME in help_text and "--ls-real-target" in help_text
    out = tmp_path / "run"
    train_cli.main(["--loss", NAME, "--ls-real-target", "0.9", "--dataset", "fashion_mnist", "--data-dir",
                    str(data_dir), "--limit", "256", "--width", "16", "--batch-size", "32", "--epochs", "1",
                    "--eval-samples", "0", "--out", str(out), "--quiet"])
    config = json.loads((out / "config.json").read_text())
    assert config["loss"] == NAME and config["ls_real_target"] == 0.9
    (metrics,) = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert math.isfinite(metrics["d_loss"]) and math.isfinite(metrics["g_loss"]) and not metrics["diverged"]
    assert len(d_loss_calls) == 8  # 256 images / 32: every D step went through the registered loss


def test_the_search_space_samples_it_and_the_trainer_trains_it(least_squares, fashion_train):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    study.enqueue_trial({"loss": NAME})
    trial = study.ask()
    assert gan_space(trial) == {"model": "gan"}
    assert trial.params["loss"] == NAME and 0.5 <= trial.params["ls_real_target"] <= 1.0
    assert not {"clip_value", "gp_lambda", "real_label"} & trial.params.keys()
    others = [study.ask() for _ in range(30)]  # the registry's other losses stay in the space
    for other in others:
        gan_space(other)
    assert {t.params["loss"] for t in others} == set(LOSSES)

    narrow = {"arch": "dcgan", "width": 16, "batch_size": 32}  # what the space drew, on a small net
    config = GANConfig.from_dict({**trial.params, **narrow})
    assert config.loss_params == {"ls_real_target": trial.params["ls_real_target"]}
    metrics = GANTrainer(config, fashion_train.subset(256, seed=0)).train_steps(5)
    assert all(math.isfinite(metrics[k]) for k in ("d_loss", "g_loss", "d_real", "d_fake"))
    assert len(d_loss_calls) == 5


def test_unknown_loss_is_an_error_once_removed():
    assert NAME not in LOSSES
    with pytest.raises(UserInputError, match=f"loss: '{NAME}' is not one of"):
        GANConfig(loss=NAME)
    with pytest.raises(SystemExit) as done:
        train_cli.main(["--loss", NAME])
    assert done.value.code == 2


def test_architectures_come_from_their_registry():
    assert set(ARCHS) == {"dcgan", "mlp"}
    with pytest.raises(UserInputError, match="arch: 'resnet' is not one of dcgan, mlp"):
        GANConfig(arch="resnet")
