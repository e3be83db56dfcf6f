"""python3 -m p1.iclevr.guide_classifier: the shared guide classifier on iCLEVR's labels."""
import torch

from p1.diffusion import cosine_schedule, linear_schedule
from p1.guide_classifier import load_guide_classifier, noisy_accuracy
from p1.iclevr.guide_classifier import lab_accuracy, main
from p1.iclevr.render import build

CPU = torch.device("cpu")


def test_training_cli_writes_a_multi_label_classifier_for_the_cosine_schedule(tmp_path, capsys):
    data = str(tmp_path / "iclevr_data")
    build(data, scenes=4, width=32, height=24, seed=0)
    out = tmp_path / "guide.pt"
    main(["--data", data, "--out", str(out), "--steps", "2", "--batch-size", "4", "--width", "8",
          "--timesteps", "20", "--holdout", "0.25", "--bf16", "--device", "cpu"])
    assert "held-out accuracy by timestep" in capsys.readouterr().out
    model = load_guide_classifier(str(out), CPU, cosine_schedule(20))
    assert model.multi_label and model.num_labels == 24 and model.patch_size == 2
    assert torch.load(str(out))["dataset"] == "iclevr"


def test_lab_rule_top_k_of_the_sigmoids():
    class Fixed(torch.nn.Module):
        def forward(self, x, t):
            return torch.tensor([[3.0, 2.0, 1.0], [1.0, 2.0, 3.0]])[: len(x)]

    objects = torch.tensor([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # hits: 2 of 2, 0 of 1
    assert noisy_accuracy(Fixed(), linear_schedule(20), torch.zeros(2, 3, 28, 28), objects,
                          [0, 10], CPU, lab_accuracy) == {0: 2 / 3, 10: 2 / 3}


def test_the_shipped_guide_is_an_iclevr_classifier_for_the_shipped_ddpm():
    from p1.generate import load_checkpoint
    from p1.iclevr.generate import DEFAULT_CHECKPOINTS, SHIPPED_GUIDE
    from p1.iclevr.guide_classifier import load_iclevr_guide

    _, schedule, _ = load_checkpoint(DEFAULT_CHECKPOINTS["ddpm"], CPU)
    guide = load_iclevr_guide(SHIPPED_GUIDE, CPU, schedule)
    assert guide.patch_size == 2 and guide(torch.zeros(2, 3, 64, 64), torch.zeros(2).long()
                                           ).shape == (2, 24)
