"""p1.iclevr.gan: the conditional GAN's networks, losses, generation and checkpoint files."""
import pytest
import torch

from p1.errors import UserError
from p1.iclevr.gan import (
    Discriminator,
    Generator,
    checkpoint_kind,
    discriminator_loss,
    export_state,
    generate,
    generator_loss,
    latent,
    load_generator,
    standing_statistics,
    teacher_loss,
)
from p1.iclevr.generate import DEFAULT_CHECKPOINTS
from tests.p1.fixtures import save_tiny_checkpoint

TINY_G = {"z_dim": 8, "cond_dim": 24, "channels": 16, "image_size": 16}


def tiny_pair(seed=0):
    torch.manual_seed(seed)
    return Generator(**TINY_G), Discriminator(cond_dim=24, channels=4)


def labels(batch):
    y = torch.zeros(batch, 24)
    y[torch.arange(batch), torch.arange(batch) % 24] = 1
    y[0, 23] = 1
    return y


def test_shapes():
    generator, discriminator = tiny_pair()
    y = labels(3)
    x = generator(torch.randn(3, 8), y)
    assert x.shape == (3, 3, 16, 16) and x.abs().max() <= 1
    score, logits = discriminator(x, y)
    assert score.shape == (3,) and logits.shape == (3, 24)
    with pytest.raises(ValueError):
        Generator(channels=12, image_size=32)


def test_one_step_of_each_loss_changes_its_network():
    generator, discriminator = tiny_pair()
    opt_g = torch.optim.Adam(generator.parameters(), lr=1e-2)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=1e-2)
    before_g = [p.clone() for p in generator.parameters()]
    before_d = [p.clone() for p in discriminator.parameters()]
    y = labels(4)
    fake = generator(torch.randn(4, 8), y)
    real = torch.rand(4, 3, 16, 16) * 2 - 1
    d_losses = discriminator_loss(discriminator, real, y, fake.detach(), y, 1.0)
    opt_d.zero_grad()
    d_losses["total"].backward()
    opt_d.step()
    assert all(p.grad is None for p in generator.parameters())
    g_losses = generator_loss(discriminator, fake, y, 1.0)
    opt_g.zero_grad()
    g_losses["total"].backward()
    opt_g.step()
    assert any(not torch.equal(a, b) for a, b in zip(before_g, generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(before_d, discriminator.parameters()))
    assert set(d_losses) == set(g_losses) == {"total", "adversarial", "auxiliary"}


def test_teacher_loss_reads_the_fakes_at_64_and_t_0_and_steers_only_the_generator():
    class Teacher(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(3 * 64 * 64, 24)

        def forward(self, x, t):
            assert x.shape[-2:] == (64, 64) and t.tolist() == [0] * len(x)
            return self.linear(x.flatten(1))

    generator, _ = tiny_pair()
    teacher = Teacher().requires_grad_(False)
    y = labels(4)
    loss = teacher_loss(teacher, generator(torch.randn(4, 8), y), y)
    loss.backward()
    assert loss.dim() == 0 and loss.item() > 0
    assert all(p.grad is not None for p in generator.parameters() if p.requires_grad)
    assert all(p.grad is None for p in teacher.parameters())


def test_generation_is_per_seed_and_upsampled_to_64():
    generator, _ = tiny_pair()
    standing_statistics(generator, labels(10), batches=2, batch_size=8, seed=0)
    assert not generator.training
    y = labels(5)
    together = generate(generator, y, [3, 4, 5, 6, 7])
    alone = generate(generator, y[2:3], [5])
    assert together.dtype == torch.uint8 and together.shape == (5, 3, 64, 64)
    assert torch.equal(together[2], alone[0])
    assert not torch.equal(together[0], together[1])
    assert torch.equal(latent([5], 8), latent([5], 8))


def test_export_round_trip_and_kinds(tmp_path):
    generator, _ = tiny_pair()
    standing_statistics(generator, labels(10), batches=1, batch_size=8, seed=0)
    path = str(tmp_path / "gan.pt")
    torch.save(export_state(generator, TINY_G, 7), path)
    loaded, checkpoint = load_generator(path, torch.device("cpu"), "train one")
    assert checkpoint["step"] == 7 and checkpoint_kind(checkpoint) == "gan"
    y = labels(2)
    assert torch.equal(generate(loaded, y, [0, 1]), generate(generator, y, [0, 1]))


def test_load_generator_errors(tmp_path):
    ddpm = str(tmp_path / "ema.pt")
    save_tiny_checkpoint(ddpm)
    with pytest.raises(UserError, match="is a DDPM checkpoint: use --model ddpm"):
        load_generator(ddpm, torch.device("cpu"), "")
    with pytest.raises(UserError, match="no checkpoint at .*; train it"):
        load_generator(str(tmp_path / "missing.pt"), torch.device("cpu"), "train it")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="cannot read checkpoint"):
        load_generator(str(tmp_path / "junk.pt"), torch.device("cpu"), "")
    generator, _ = tiny_pair()
    torch.save(export_state(generator, dict(TINY_G, channels=32), 0), tmp_path / "bad.pt")
    with pytest.raises(UserError, match="does not match the GAN"):
        load_generator(str(tmp_path / "bad.pt"), torch.device("cpu"), "")


def test_the_shipped_gan_loads_and_generates():
    generator, checkpoint = load_generator(DEFAULT_CHECKPOINTS["gan"], torch.device("cpu"), "")
    assert generator.cond_dim == 24 and checkpoint["train_seconds"] > 0
    assert generate(generator, labels(2), [0, 1]).shape == (2, 3, 64, 64)
