"""`models.train --dropout` reaches every dropout layer of the regularized VAE (flag -> VAEConfig ->
ConvVAE); the flag without --regularized (which would be silently ignored) and a rate that would
drop everything are refused."""

import dataclasses

import pytest
import torch
from torch import nn

from models.config import VAEConfig
from models.data import Dataset
from models.errors import UserInputError
from models.train import build_parser, config_from_args
from models.vae_trainer import VAETrainer


def dropout_rates(*flags) -> set[float]:
    config = config_from_args(build_parser().parse_args(["--model", "vae", *flags]))
    data = Dataset("tiny", torch.rand(16, 1, 28, 28), torch.zeros(16, dtype=torch.long), 1)
    trainer = VAETrainer(dataclasses.replace(config, batch_size=8, width=8), data)
    return {layer.p for layer in trainer.model.modules() if isinstance(layer, nn.Dropout2d)}


def test_dropout_flag_sets_the_rate_of_the_regularized_vae():
    assert dropout_rates("--regularized", "--dropout", "0.35") == {0.35}
    assert dropout_rates("--regularized") == {0.2}  # the labs' default
    assert dropout_rates() == set()  # the vanilla VAE has no dropout


def test_dropout_without_regularized_is_refused_and_left_out_of_retrain_commands():
    from models.train import retrain_command
    with pytest.raises(UserInputError, match=r"^dropout: only the regularized VAE has dropout"):
        dropout_rates("--dropout", "0.35")
    assert "--dropout" not in retrain_command({"model": "vae", "latent_dim": 8})
    assert "--dropout 0.35" in retrain_command({"model": "vae", "regularized": True, "dropout": 0.35})


def test_a_dropout_rate_of_one_is_refused():
    with pytest.raises(UserInputError, match=r"^dropout: must be in \[0, 1\)"):
        VAEConfig(regularized=True, dropout=1.0)
