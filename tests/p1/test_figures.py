import os

import torch
from PIL import Image

from p1.figures import REVERSE_TIMES, labelled_strip, main, pick_states, save_line_chart


def test_line_chart(tmp_path):
    save_line_chart([1, 2, 3], [1.0, 0.5, 0.1], str(tmp_path / "a.png"), "loss", "step")
    save_line_chart([1], [-1.0], str(tmp_path / "b.png"), "one point", "step")
    assert Image.open(tmp_path / "a.png").size == (640, 400)


def test_pick_states_uses_paper_times():
    states = {t: torch.full((1,), t) for t in range(-1, 1000)}
    picked = [int(s) for s in pick_states(states)]
    assert picked == [999, 799, 599, 399, 199, -1]
    sparse = {999: torch.tensor(1), 500: torch.tensor(2), -1: torch.tensor(3)}
    assert [int(s) for s in pick_states(sparse)] == [1, 2, 2, 3, 3, 3]


def test_labelled_strip_size():
    tile = torch.zeros(3, 28, 28, dtype=torch.uint8)
    image = labelled_strip([[tile] * 6] * 2, ["A", "B"], [f"t={t}" for t in REVERSE_TIMES])
    assert image.size[0] > 6 * 112 and image.size[1] > 2 * 112


def test_figures_command(tmp_path, tiny_checkpoint):
    main([str(tmp_path / "fig"), "--ckpt", tiny_checkpoint, "--steps", "2", "--device", "cpu",
          "--model-chunk", "4", "--classifier-guidance", "0"])
    assert sorted(os.listdir(tmp_path / "fig")) == ["grid_mnistm.png", "grid_svhn.png",
                                                    "reverse_process.png"]
    assert Image.open(tmp_path / "fig" / "grid_svhn.png").size == (302, 302)


def test_figures_use_the_same_classifier_guidance_as_hw2_1(tmp_path, tiny_checkpoint,
                                                           tiny_guide_classifier):
    common = ["--ckpt", tiny_checkpoint, "--steps", "2", "--device", "cpu", "--model-chunk", "4",
              "--classifier-guidance", "0"]
    main([str(tmp_path / "plain")] + common)
    main([str(tmp_path / "guided")] + common + ["--classifier-guidance", "50",
                                                "--guide-classifier", tiny_guide_classifier])
    plain = (tmp_path / "plain" / "grid_mnistm.png").read_bytes()
    assert (tmp_path / "guided" / "grid_mnistm.png").read_bytes() != plain
