"""Each loss's gradients point the right way; WGAN clipping and WGAN-GP's penalty are exact."""

import pytest
import torch

from models import losses


def grads(fn, *tensors):
    tensors = [t.clone().requires_grad_(True) for t in tensors]
    fn(*tensors).backward()
    return [t.grad for t in tensors]


@pytest.mark.parametrize("loss", losses.LOSSES)
def test_discriminator_gradient_raises_real_and_lowers_fake(loss):
    real, fake = torch.randn(32), torch.randn(32)
    g_real, g_fake = grads(lambda r, f: losses.discriminator_loss(loss, r, f), real, fake)
    # gradient descent moves logits against the gradient: real up, fake down
    assert (g_real <= 0).all() and (g_real < 0).any()
    assert (g_fake >= 0).all() and (g_fake > 0).any()


@pytest.mark.parametrize("loss", losses.LOSSES)
def test_generator_gradient_raises_fake(loss):
    (g_fake,) = grads(lambda f: losses.generator_loss(loss, f), torch.randn(32))
    assert (g_fake < 0).all()


def test_hinge_ignores_confident_logits():
    (g_real, g_fake) = grads(losses.d_hinge, torch.full((4,), 2.0), torch.full((4,), -2.0))
    assert torch.equal(g_real, torch.zeros(4)) and torch.equal(g_fake, torch.zeros(4))


def test_label_smoothing_moves_bce_optimum_below_one():
    logits = torch.tensor([4.0], requires_grad=True)  # D(x) = 0.98 > 0.9
    losses.d_bce(logits, torch.tensor([-10.0]), real_label=0.9).backward()
    assert logits.grad.item() > 0  # pushed back towards sigmoid = 0.9


def test_wgan_weights_stay_within_clip_after_a_step():
    critic = torch.nn.Sequential(torch.nn.Linear(10, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.RMSprop(critic.parameters(), lr=0.5)
    loss = losses.d_wasserstein(critic(torch.randn(16, 10)), critic(torch.randn(16, 10) + 1))
    loss.backward()
    opt.step()
    assert max(p.abs().max().item() for p in critic.parameters()) > 0.01  # the big step left the box
    losses.clip_weights_(critic, 0.01)
    assert max(p.abs().max().item() for p in critic.parameters()) <= 0.01


def test_gradient_penalty_of_linear_critic_is_closed_form():
    critic = torch.nn.Linear(6, 1)
    real, fake = torch.randn(64, 6), torch.randn(64, 6)
    expected = (critic.weight.norm() - 1) ** 2  # the gradient of w.x + b is w everywhere
    assert losses.gradient_penalty(critic, real, fake).item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_penalty_is_differentiable_in_critic_weights():
    critic = torch.nn.Linear(6, 1)
    losses.gradient_penalty(critic, torch.randn(8, 6), torch.randn(8, 6)).backward()
    assert critic.weight.grad is not None and critic.weight.grad.abs().sum() > 0
