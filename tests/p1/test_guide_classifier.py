import pytest
import torch

from p1.diffusion import linear_schedule
from p1.errors import UserError
from p1.guide_classifier import (
    NoisyDigitClassifier,
    digit_guidance,
    guidance_gradient,
    load_guide_classifier,
    main,
)


def test_classifier_shapes_and_timestep_input():
    torch.manual_seed(0)
    model = NoisyDigitClassifier(num_timesteps=20, width=8).eval()
    x = torch.randn(3, 3, 28, 28)
    logits = model(x, torch.tensor([0, 5, 19]))
    assert logits.shape == (3, 10)
    assert not torch.allclose(model(x, torch.tensor([0, 0, 0])), model(x, torch.tensor([19] * 3)))


def test_guidance_gradient_raises_the_target_log_probability():
    torch.manual_seed(0)
    model = NoisyDigitClassifier(num_timesteps=20, width=8).eval()
    x, t, digits = torch.randn(4, 3, 28, 28), torch.tensor([3, 3, 3, 3]), torch.tensor([1, 2, 3, 4])

    def log_prob(images):
        return torch.log_softmax(model(images, t), 1)[torch.arange(4), digits]

    with torch.no_grad():
        gradient = guidance_gradient(model, digits)(x, t)
        assert gradient.shape == x.shape
        assert torch.all(log_prob(x + 1e-2 * gradient) > log_prob(x))


def test_digit_guidance_reads_the_digit_of_each_condition():
    schedule = linear_schedule(20)
    seen = {}

    class Recorder(torch.nn.Module):
        def forward(self, x, t):
            seen["x"] = x
            return x.flatten(1)[:, :10] * 0.0 + torch.arange(10.0)

    cond = torch.zeros(2, 12)
    cond[0, 7], cond[1, 2], cond[:, 10] = 1.0, 1.0, 1.0
    eps_fn = digit_guidance(Recorder(), schedule, 2.0)(lambda x, t: torch.zeros_like(x), cond)
    out = eps_fn(torch.randn(2, 3, 28, 28), torch.tensor([5, 5]))
    assert out.shape == (2, 3, 28, 28) and seen["x"].shape == (2, 3, 28, 28)


def test_training_cli_writes_a_loadable_classifier(digit_layout, tmp_path, capsys):
    out = tmp_path / "guide.pt"
    main(["--data", digit_layout, "--out", str(out), "--steps", "2", "--batch-size", "4",
          "--width", "8", "--timesteps", "20", "--holdout", "0.2", "--device", "cpu"])
    assert "held-out accuracy by timestep" in capsys.readouterr().out
    model = load_guide_classifier(str(out), torch.device("cpu"))
    assert model.num_timesteps == 20 and not any(p.requires_grad for p in model.parameters())
    state = torch.load(str(out))
    assert set(state["heldout_accuracy"]) == {0, 4, 8, 12, 16}
    assert state["heldout_images"] == 4 and state["train_images"] == 20


def test_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="no guide classifier"):
        load_guide_classifier(str(tmp_path / "none.pt"), torch.device("cpu"))
    foreign = tmp_path / "foreign.pt"
    torch.save({"arch": "something else"}, foreign)
    with pytest.raises(UserError, match="not a p1.guide_classifier checkpoint"):
        load_guide_classifier(str(foreign), torch.device("cpu"))
    (tmp_path / "junk.pt").write_text("junk")
    with pytest.raises(UserError, match="cannot read guide classifier"):
        load_guide_classifier(str(tmp_path / "junk.pt"), torch.device("cpu"))
    with pytest.raises(UserError, match="--steps"):
        main(["--steps", "0"])
