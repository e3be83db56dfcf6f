"""python3 -m p1.iclevr.train_gan: outputs, exact resume, refused inputs."""
import csv
import os

import pytest
import torch

from p1.errors import UserError
from p1.iclevr.gan import load_generator
from p1.iclevr.render import build
from p1.iclevr.train_gan import main
from tests.p1.fixtures import save_tiny_checkpoint, save_tiny_guide_classifier

TINY = ["--batch-size", "4", "--z-dim", "8", "--g-channels", "16", "--d-channels", "4",
        "--image-size", "16", "--standing-batches", "1", "--log-every", "1",
        "--device", "cpu"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("gan") / "iclevr_data")
    build(root, scenes=2, width=32, height=24, seed=0)
    return root


def train(data, out, steps, *extra):
    main(["--data", data, "--out", str(out), "--steps", str(steps), "--ckpt-every", "2"]
         + TINY + list(extra))


def test_outputs(tmp_path, data):
    out = tmp_path / "run"
    train(data, out, 2, "--sample-every", "2")
    assert {"checkpoint.pt", "gan.pt", "loss.csv", "loss_curve.png", "samples"} <= set(
        os.listdir(out))
    assert os.listdir(out / "samples") == ["step_000002.png"]
    rows = list(csv.DictReader(open(out / "loss.csv")))
    assert [row["step"] for row in rows] == ["1", "2"]
    generator, checkpoint = load_generator(str(out / "gan.pt"), torch.device("cpu"), "")
    assert checkpoint["step"] == 2 and generator.image_size == 16
    assert checkpoint["train_seconds"] > 0


def test_resume_is_exact(tmp_path, data):
    train(data, tmp_path / "straight", 4, "--sample-every", "0")
    train(data, tmp_path / "resumed", 2, "--sample-every", "0")
    train(data, tmp_path / "resumed", 4, "--sample-every", "0")
    a = torch.load(tmp_path / "straight" / "checkpoint.pt")
    b = torch.load(tmp_path / "resumed" / "checkpoint.pt")
    for part in ("generator", "discriminator", "generator_ema"):
        assert all(torch.equal(a[part][key], b[part][key]) for key in a[part]), part
    steps = [row["step"] for row in csv.DictReader(open(tmp_path / "resumed" / "loss.csv"))]
    assert steps == ["1", "2", "3", "4"]


def test_a_teacher_adds_its_loss_and_must_be_an_iclevr_guide(tmp_path, data):
    teacher = save_tiny_guide_classifier(tmp_path / "guide.pt", kind="cosine", num_labels=24,
                                         image_size=64, patch_size=2)
    train(data, tmp_path / "plain", 2, "--sample-every", "0")
    train(data, tmp_path / "taught", 2, "--sample-every", "0", "--teacher", teacher,
          "--teacher-weight", "5")
    plain = list(csv.DictReader(open(tmp_path / "plain" / "loss.csv")))
    taught = list(csv.DictReader(open(tmp_path / "taught" / "loss.csv")))
    assert [float(row["g_teacher"]) for row in plain] == [0.0, 0.0]
    assert all(float(row["g_teacher"]) > 0 for row in taught)
    assert plain[1]["g_loss"] != taught[1]["g_loss"]  # the generator learnt something else
    digits = save_tiny_guide_classifier(tmp_path / "digits.pt")
    with pytest.raises(UserError, match="not an iCLEVR guide classifier"):
        train(data, tmp_path / "bad", 1, "--teacher", digits)
    with pytest.raises(UserError, match="teacher-weight"):
        train(data, tmp_path / "bad", 1, "--teacher", teacher, "--teacher-weight", "-1")


def test_refuses_a_ddpm_run_folder_and_bad_options(tmp_path, data):
    save_tiny_checkpoint(str(tmp_path / "checkpoint.pt"))
    with pytest.raises(UserError, match="holds a DDPM run"):
        train(data, tmp_path, 2)
    with pytest.raises(UserError, match="--steps must be positive"):
        train(data, tmp_path / "x", 0)
    with pytest.raises(UserError, match="bad GAN settings"):
        main(["--data", data, "--out", str(tmp_path / "y"), "--steps", "1"] + TINY
             + ["--g-channels", "10"])
