import pytest
import torch

from p1.diffusion import cosine_schedule, linear_schedule
from p1.errors import UserError
from p1.guide_classifier import (
    NoisyClassifier,
    guidance_gradient,
    label_guidance,
    load_guide_classifier,
    log_likelihood,
    main,
)
from tests.p1.fixtures import save_tiny_guide_classifier

CPU = torch.device("cpu")


def test_shapes_timestep_input_and_patch_folding():
    torch.manual_seed(0)
    digits = NoisyClassifier(num_timesteps=20, width=8).eval()
    x = torch.randn(3, 3, 28, 28)
    assert digits(x, torch.tensor([0, 5, 19])).shape == (3, 10)
    assert not torch.allclose(digits(x, torch.zeros(3, dtype=torch.long)),
                              digits(x, torch.full((3,), 19)))
    scenes = NoisyClassifier(num_labels=24, image_size=64, width=8, patch_size=2)
    assert scenes.net[0].in_channels == 3 * 4 + 1
    assert scenes(torch.randn(2, 3, 64, 64), torch.tensor([1, 2])).shape == (2, 24)


def test_log_likelihood_single_and_multi_label():
    logits = torch.tensor([[2.0, 0.0, -1.0]])
    assert torch.allclose(log_likelihood(logits, torch.tensor([0])),
                          torch.log_softmax(logits, 1)[:, 0])
    probs = torch.sigmoid(logits)
    expected = torch.log(probs[0, 0]) + torch.log(1 - probs[0, 1]) + torch.log(probs[0, 2])
    assert torch.allclose(log_likelihood(logits, torch.tensor([[1.0, 0.0, 1.0]])), expected[None])


@pytest.mark.parametrize("targets", [torch.tensor([1, 2, 3, 4]),
                                     torch.eye(10)[[1, 2, 3, 4]] + torch.eye(10)[[5, 6, 7, 8]]])
def test_guidance_gradient_raises_the_target_log_likelihood(targets):
    torch.manual_seed(0)
    model = NoisyClassifier(num_timesteps=20, width=8).eval()
    x, t = torch.randn(4, 3, 28, 28), torch.full((4,), 3)

    def score(images):
        return log_likelihood(model(images, t), targets)

    with torch.no_grad():
        gradient = guidance_gradient(model, targets)(x, t)
        assert gradient.shape == x.shape
        assert torch.all(score(x + 1e-2 * gradient) > score(x))


def test_chunked_gradient_matches_and_pads():
    torch.manual_seed(0)
    model = NoisyClassifier(num_timesteps=20, width=8).eval()
    x, t, digits = torch.randn(5, 3, 28, 28), torch.tensor([1, 2, 3, 4, 5]), torch.arange(5)
    whole = guidance_gradient(model, digits)(x, t)
    chunked = guidance_gradient(model, digits, chunk=3)(x, t)  # 3 + 2 rows, the last padded
    assert chunked.shape == x.shape and torch.allclose(whole, chunked, atol=1e-5)


def test_label_guidance_targets_the_digit_or_the_object_set(tmp_path):
    digits = load_guide_classifier(save_tiny_guide_classifier(tmp_path / "d.pt"), CPU,
                                   linear_schedule(20))
    scenes = load_guide_classifier(
        save_tiny_guide_classifier(tmp_path / "s.pt", kind="cosine", num_labels=24,
                                   image_size=64, patch_size=2), CPU, cosine_schedule(20))
    assert not digits.multi_label and scenes.multi_label
    zero_eps = lambda x, t: torch.zeros_like(x)  # noqa: E731
    t = torch.tensor([5, 5])
    cond = torch.zeros(2, 12)
    cond[0, 7], cond[1, 2], cond[:, 10] = 1.0, 1.0, 1.0
    x = torch.randn(2, 3, 28, 28)
    guided = label_guidance(digits, linear_schedule(20), 2.0)(zero_eps, cond)(x, t)
    expected = guidance_gradient(digits, torch.tensor([7, 2]))(x, t)
    a = linear_schedule(20).alphas_cumprod[5].float()
    assert torch.allclose(guided, -2.0 * (1 - a).sqrt() * expected, atol=1e-6)
    objects = torch.zeros(2, 24)
    objects[0, [1, 5]], objects[1, 9] = 1.0, 1.0
    scene_x = torch.randn(2, 3, 64, 64)
    guided = label_guidance(scenes, cosine_schedule(20), 1.0)(zero_eps, objects)(scene_x, t)
    expected = guidance_gradient(scenes, objects)(scene_x, t)
    a = cosine_schedule(20).alphas_cumprod[5].float()
    assert torch.allclose(guided, -(1 - a).sqrt() * expected, atol=1e-6)


def test_training_cli_writes_a_loadable_classifier(digit_layout, tmp_path, capsys):
    out = tmp_path / "guide.pt"
    main(["--data", digit_layout, "--out", str(out), "--steps", "2", "--batch-size", "4",
          "--width", "8", "--timesteps", "20", "--holdout", "0.2", "--device", "cpu"])
    assert "held-out accuracy by timestep" in capsys.readouterr().out
    model = load_guide_classifier(str(out), CPU, linear_schedule(20))
    assert model.num_timesteps == 20 and not any(p.requires_grad for p in model.parameters())
    state = torch.load(str(out))
    assert set(state["heldout_accuracy"]) == {0, 4, 8, 12, 16}
    assert state["heldout_images"] == 4 and state["train_images"] == 20
    with pytest.raises(UserError, match="another noise schedule"):
        load_guide_classifier(str(out), CPU, cosine_schedule(20))


def test_bad_inputs(tmp_path):
    schedule = linear_schedule(20)
    with pytest.raises(UserError, match="no guide classifier"):
        load_guide_classifier(str(tmp_path / "none.pt"), CPU, schedule)
    foreign = tmp_path / "foreign.pt"
    torch.save({"arch": "something else"}, foreign)
    with pytest.raises(UserError, match="not a p1.guide_classifier checkpoint"):
        load_guide_classifier(str(foreign), CPU, schedule)
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(UserError, match="cannot read guide classifier"):
        load_guide_classifier(str(tmp_path / "junk.pt"), CPU, schedule)
    with pytest.raises(UserError, match="--steps"):
        main(["--steps", "0"])


def test_noisy_accuracy_top1_or_the_rule_passed_in():
    from p1.guide_classifier import noisy_accuracy

    class Fixed(torch.nn.Module):
        def __init__(self, logits):
            super().__init__()
            self.logits = logits

        def forward(self, x, t):
            return self.logits[: len(x)]

    schedule, x0 = linear_schedule(20), torch.zeros(2, 3, 28, 28)
    logits = torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])
    assert noisy_accuracy(Fixed(logits), schedule, x0, torch.tensor([0, 0]), [0], CPU) == {0: 0.5}
    top_two = lambda logits, targets: 0.25  # noqa: E731 - any score rule is passed in
    assert noisy_accuracy(Fixed(logits), schedule, x0, torch.tensor([0, 0]), [0, 10], CPU,
                          top_two) == {0: 0.25, 10: 0.25}
