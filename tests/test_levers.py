"""The quality levers: EMA of G (what sampling and evaluation use), D normalisation, lr decay."""

import io
import math

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

from models.config import GANConfig
from models.errors import UserInputError
from models.gan_trainer import GANTrainer
from models.nets import D_NORMS

BATCH = 32  # 256 images: 8 batches an epoch


@pytest.fixture(scope="module")
def tiny_fashion(fashion_train):
    return fashion_train.subset(256, seed=0)


def small(**levers) -> GANConfig:
    return GANConfig(**{"width": 16, "batch_size": BATCH, "seed": 3, **levers})


def test_ema_changes_the_samples_and_is_what_sample_and_evaluation_use(tiny_fashion):
    plain, averaged = GANTrainer(small(), tiny_fashion), GANTrainer(small(ema_decay=0.9), tiny_fashion)
    plain.train_steps(12)
    averaged.train_steps(12)
    for a, b in zip(plain.G.state_dict().values(), averaged.G.state_dict().values()):
        assert torch.equal(a, b)  # the EMA does not touch training: both trained the same G
    assert plain.generator is plain.G and averaged.generator is averaged.G_ema
    assert not torch.equal(plain.sample(), averaged.sample())  # the fixed-noise grid
    assert not torch.equal(plain.sample(500), averaged.sample(500))  # what a trial's evaluation scores
    grid = averaged.sample()
    with torch.no_grad():
        assert not averaged.G_ema.training  # never trained, so always in eval mode (BatchNorm running stats)
        assert torch.equal(grid, averaged.G_ema(averaged.fixed_noise))


def test_ema_averages_weights_and_batchnorm_statistics_after_every_g_step(tiny_fashion):
    trainer = GANTrainer(small(ema_decay=0.8), tiny_fashion)  # n_critic 1: one G step per step
    expected = {k: v.clone() for k, v in trainer.G.state_dict().items()}
    for n in range(40):  # the decay warms up as TensorFlow's EMA does, min(0.8, (1 + n) / (10 + n)), then stays
        trainer.train_steps(1)
        weight = 1 - min(0.8, (1 + n) / (10 + n))
        for k, v in trainer.G.state_dict().items():
            expected[k] = expected[k].lerp(v, weight) if v.is_floating_point() else v.clone()
    assert weight == pytest.approx(0.2) and trainer.ema_updates == 40
    ema, live = trainer.G_ema.state_dict(), trainer.G.state_dict()
    for k in expected:
        assert torch.allclose(ema[k], expected[k], rtol=1e-5, atol=1e-7), k
    running = [k for k in ema if k.endswith("running_mean") or k.endswith("running_var")]
    assert running and all(not torch.equal(ema[k], live[k]) for k in running)


def test_ema_copies_g_exactly_until_its_start_epoch(tiny_fashion):
    trainer = GANTrainer(small(ema_decay=0.999, ema_start=1.0), tiny_fashion)
    trainer.train_steps(7)  # epoch 7/8: before the start
    assert all(torch.equal(a, b) for a, b in zip(trainer.G_ema.state_dict().values(),
                                                 trainer.G.state_dict().values()))
    trainer.train_steps(3)  # G steps at epochs 1, 1.125, 1.25 are averaged
    assert not all(torch.equal(a, b) for a, b in zip(trainer.G_ema.state_dict().values(),
                                                     trainer.G.state_dict().values()))


NORM_MODULES = {"batch": (nn.BatchNorm1d, nn.BatchNorm2d), "layer": (nn.GroupNorm, nn.LayerNorm)}


@pytest.mark.parametrize("arch", ["dcgan", "mlp"])
@pytest.mark.parametrize("d_norm", D_NORMS)
def test_each_d_norm_builds_its_modules_and_trains(tiny_fashion, arch, d_norm):
    loss = "bce" if d_norm == "batch" else "wgan-gp"
    trainer = GANTrainer(small(arch=arch, d_norm=d_norm, loss=loss), tiny_fashion)
    modules = list(trainer.D.modules())
    for name, types in NORM_MODULES.items():
        assert any(isinstance(m, types) for m in modules) == (name == d_norm), name
    assert any(parametrize.is_parametrized(m) for m in modules) == (d_norm == "spectral")
    if arch == "dcgan":
        assert isinstance(trainer.D.body[1], nn.LeakyReLU)  # the first conv is never normalised
    metrics = trainer.train_steps(6)
    assert all(math.isfinite(metrics[k]) for k in ("d_loss", "g_loss", "d_real", "d_fake"))
    assert not metrics["diverged"]


def test_batch_norm_in_the_critic_with_wgan_gp_is_one_line_naming_both():
    with pytest.raises(UserInputError) as err:
        GANConfig(loss="wgan-gp", d_norm="batch")
    message = str(err.value)
    assert message.startswith("d_norm:") and "wgan-gp" in message and "\n" not in message
    GANConfig(loss="wgan-gp", d_norm="layer")


def learning_rates(trainer) -> tuple:
    return trainer.opt_d.param_groups[0]["lr"], trainer.opt_g.param_groups[0]["lr"]


def test_linear_lr_decay_reaches_zero_at_the_last_step(tiny_fashion):
    config = small(lr_decay="linear", epochs=2, lr_g=4e-4, lr_d=2e-4)
    trainer = GANTrainer(config, tiny_fashion)
    trainer.train_steps(4)
    assert learning_rates(trainer) == pytest.approx((2e-4 * 12 / 16, 4e-4 * 12 / 16))
    trainer.train_epoch()
    trainer.train_epoch()
    assert trainer.epoch == 2 and learning_rates(trainer) == (0.0, 0.0)
    steady = GANTrainer(small(epochs=2, lr_g=4e-4, lr_d=2e-4), tiny_fashion)
    steady.train_steps(16)
    assert learning_rates(steady) == (2e-4, 4e-4)


def run(config, data, before: int, after: int, resume: bool):
    trainer = GANTrainer(config, data)
    trainer.train_steps(before)
    if resume:
        buffer = io.BytesIO()  # through bytes, as a checkpoint on disk
        torch.save(trainer.state_dict(), buffer)
        torch.manual_seed(12345)  # disturb the global stream; resume must restore it
        trainer = GANTrainer(config, data)
        buffer.seek(0)
        trainer.load_state_dict(torch.load(buffer, weights_only=True))
    trainer.sample(64)  # an evaluation in between must not change what training does next
    return trainer, trainer.train_steps(after)


def test_ema_and_lr_decay_resume_exactly(tiny_fashion):
    config = small(loss="hinge", ema_decay=0.9, ema_start=0.5, lr_decay="linear", n_critic=2, epochs=2)
    straight, expected = run(config, tiny_fashion, 7, 6, resume=False)
    resumed, got = run(config, tiny_fashion, 7, 6, resume=True)
    for key in ("d_loss", "g_loss", "d_real", "d_fake"):
        assert got[key] == expected[key], key
    assert learning_rates(resumed) == learning_rates(straight)
    assert torch.equal(resumed.sample(), straight.sample())  # the EMA generator came back too
    assert torch.equal(resumed.sample(100), straight.sample(100))


def test_sampling_for_evaluation_leaves_training_unchanged(tiny_fashion):
    evaluated, untouched = GANTrainer(small(), tiny_fashion), GANTrainer(small(), tiny_fashion)
    evaluated.train_steps(3)
    untouched.train_steps(3)
    evaluated.sample(200)
    assert evaluated.train_steps(3)["d_loss"] == untouched.train_steps(3)["d_loss"]


def test_the_grid_noise_is_the_same_every_epoch_and_after_resume(tiny_fashion):
    """Each epoch's grid draws the same fixed noise, so the grids show one generator's progress."""
    trainer = GANTrainer(small(epochs=3), tiny_fashion)
    before = trainer.fixed_noise.clone()
    trainer.train_steps(8)
    assert torch.equal(trainer.fixed_noise, before)
    first_grid = trainer.sample()
    trainer.train_steps(8)
    assert torch.equal(trainer.fixed_noise, before) and not torch.equal(trainer.sample(), first_grid)
    buffer = io.BytesIO()
    torch.save(trainer.state_dict(), buffer)
    buffer.seek(0)
    resumed = GANTrainer(small(epochs=3), tiny_fashion)
    resumed.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(resumed.fixed_noise, before) and torch.equal(resumed.sample(), trainer.sample())
