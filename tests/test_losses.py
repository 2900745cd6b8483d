"""Each registered loss's gradients point the right way; WGAN clipping and WGAN-GP's penalty are exact."""

import pytest
import torch

from models import losses

BUILT_IN = ("bce", "hinge", "wgan", "wgan-gp")


def grads(fn, *tensors):
    tensors = [t.clone().requires_grad_(True) for t in tensors]
    fn(*tensors).backward()
    return [t.grad for t in tensors]


def default_params(loss: str) -> dict:
    return {name: param.default for name, param in losses.LOSSES[loss].specific.items()}


def test_the_built_in_losses_are_registered():
    assert set(BUILT_IN) <= set(losses.LOSSES)
    assert {name: set(entry.specific) for name, entry in losses.LOSSES.items() if name in BUILT_IN} == {
        "bce": {"real_label"}, "hinge": set(), "wgan": {"clip_value"}, "wgan-gp": {"gp_lambda"}}


def test_registering_a_name_twice_is_an_error():
    with pytest.raises(ValueError, match="hinge"):
        losses.register_loss(losses.LOSSES["hinge"])


@pytest.mark.parametrize("loss", BUILT_IN)
def test_discriminator_gradient_raises_real_and_lowers_fake(loss):
    real, fake = torch.randn(32), torch.randn(32)
    d_loss = losses.LOSSES[loss].d_loss
    g_real, g_fake = grads(lambda r, f: d_loss(r, f, default_params(loss)), real, fake)
    # gradient descent moves logits against the gradient: real up, fake down
    assert (g_real <= 0).all() and (g_real < 0).any()
    assert (g_fake >= 0).all() and (g_fake > 0).any()


@pytest.mark.parametrize("loss", BUILT_IN)
def test_generator_gradient_raises_fake(loss):
    (g_fake,) = grads(losses.LOSSES[loss].g_loss, torch.randn(32))
    assert (g_fake < 0).all()


def test_hinge_ignores_confident_logits():
    (g_real, g_fake) = grads(lambda r, f: losses.d_hinge(r, f, {}), torch.full((4,), 2.0), torch.full((4,), -2.0))
    assert torch.equal(g_real, torch.zeros(4)) and torch.equal(g_fake, torch.zeros(4))


def test_label_smoothing_moves_bce_optimum_below_one():
    logits = torch.tensor([4.0], requires_grad=True)  # D(x) = 0.98 > 0.9
    losses.d_bce(logits, torch.tensor([-10.0]), {"real_label": 0.9}).backward()
    assert logits.grad.item() > 0  # pushed back towards sigmoid = 0.9


def test_bce_reports_probabilities_and_the_others_raw_critic_values():
    logits = torch.tensor([-3.0, 0.0, 3.0])
    assert torch.equal(losses.LOSSES["bce"].score(logits), torch.sigmoid(logits))
    assert all(torch.equal(losses.LOSSES[name].score(logits), logits) for name in ("hinge", "wgan", "wgan-gp"))


def test_wgan_weights_stay_within_clip_after_a_step():
    critic = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.RMSprop(critic.parameters(), lr=0.5)
    loss = losses.d_wasserstein(critic(torch.randn(16, 10)), critic(torch.randn(16, 10) + 1), {})
    loss.backward()
    opt.step()
    assert max(p.abs().max().item() for p in critic.parameters()) > 0.01  # the big step left the box
    losses.LOSSES["wgan"].after_d_step(critic, {"clip_value": 0.01})
    assert max(p.abs().max().item() for p in critic.parameters()) <= 0.01


def test_gradient_penalty_of_linear_critic_is_closed_form():
    critic = torch.nn.Linear(6, 1)
    real, fake = torch.randn(64, 6), torch.randn(64, 6)
    expected = (critic.weight.norm() - 1) ** 2  # the gradient of w.x + b is w everywhere
    assert losses.gradient_penalty(critic, real, fake).item() == pytest.approx(expected.item(), rel=1e-5)


def test_wgan_gp_entry_weights_its_penalty_by_gp_lambda():
    critic = torch.nn.Linear(6, 1)
    real, fake = torch.randn(64, 6), torch.randn(64, 6)
    penalty = losses.LOSSES["wgan-gp"].penalty(critic, real, fake, {"gp_lambda": 7.0})
    assert penalty.item() == pytest.approx(7.0 * (critic.weight.norm() - 1).item() ** 2, rel=1e-5)


def test_gradient_penalty_is_differentiable_in_critic_weights():
    critic = torch.nn.Linear(6, 1)
    losses.gradient_penalty(critic, torch.randn(8, 6), torch.randn(8, 6)).backward()
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("loss,optimizer,lr,betas,n_critic,own", [
    ("bce", "adam", 2e-4, (0.5, 0.999), 1, {"real_label": 1.0}),  # the labs' DCGAN
    ("hinge", "adam", 2e-4, (0.5, 0.999), 1, {}),
    ("wgan", "rmsprop", 5e-5, None, 5, {"clip_value": 0.01}),  # Arjovsky et al. 2017
    ("wgan-gp", "adam", 1e-4, (0.5, 0.9), 5, {"gp_lambda": 10.0}),  # Gulrajani et al. 2017
])
def test_each_loss_trains_with_its_papers_defaults_unless_told_otherwise(loss, optimizer, lr, betas, n_critic, own):
    from models.config import GANConfig
    config = GANConfig(loss=loss)
    assert (config.optimizer, config.lr_g, config.lr_d, config.n_critic) == (optimizer, lr, lr, n_critic)
    if betas is not None:  # RMSprop has none
        assert (config.beta1, config.beta2) == betas
    assert config.loss_params == own
    assert GANConfig(loss=loss, lr_g=1e-3, n_critic=2).to_dict()["lr_g"] == 1e-3  # a given value wins
