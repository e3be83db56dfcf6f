"""python3 -m p1.iclevr.train: iCLEVR plugged into the shared DDPM training loop."""
import os

import pytest
import torch

from p1.errors import UserError
from p1.generate import load_checkpoint
from p1.iclevr.render import build
from p1.iclevr.train import main
from tests.p1.test_train import TINY


def test_train_iclevr_multi_hot_model(tmp_path):
    data = str(tmp_path / "iclevr_data")
    build(data, scenes=2, width=32, height=24, seed=0)
    out = str(tmp_path / "run")
    main(["--data", data, "--out", out, "--steps", "2"] + TINY
         + ["--sample-every", "2", "--sample-steps", "2"])
    model, schedule, checkpoint = load_checkpoint(os.path.join(out, "ema.pt"),
                                                  torch.device("cpu"))
    assert checkpoint["cond_layout"] == "iclevr24" and checkpoint["schedule_config"] == {
        "kind": "cosine", "num_timesteps": 20}
    assert (model.cond_dim, model.image_size, model.patch_size) == (24, 64, 2)
    assert os.listdir(os.path.join(out, "samples")) == ["step_000002.png"]


def test_refuses_to_resume_a_gan_run(tmp_path):
    data = str(tmp_path / "iclevr_data")
    build(data, scenes=1, width=32, height=24, seed=0)
    torch.save({"kind": "iclevr-gan", "generator": {}, "discriminator": {}},
               tmp_path / "checkpoint.pt")
    with pytest.raises(UserError, match="holds iclevr-gan run, not a DDPM's"):
        main(["--data", data, "--out", str(tmp_path), "--steps", "1"] + TINY)
