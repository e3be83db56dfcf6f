import json
import os
import re

import pytest
import torch
from PIL import Image

from p1.errors import UserError, run_cli
from p1.generate import load_checkpoint
from p1.iclevr.evaluator import build_resnet18_evaluator, save_lab_checkpoint
from p1.iclevr.gan import Generator, export_state
from p1.iclevr.generate import DEFAULT_CHECKPOINTS, DENOISE_FRAMES, main, sample_seeds
from tests.p1.fixtures import save_tiny_checkpoint, save_tiny_guide_classifier

ICLEVR_MODEL = {"image_size": 64, "cond_dim": 24, "patch_size": 2, "channel_mults": (1, 2),
                "attention_levels": (1,)}


@pytest.fixture
def lab(tmp_path):
    """A tiny iCLEVR checkpoint, a random evaluator in the lab's format, a 3-set test file."""
    ckpt = str(tmp_path / "ema.pt")
    save_tiny_checkpoint(ckpt, **ICLEVR_MODEL)
    torch.manual_seed(0)
    evaluator = str(tmp_path / "checkpoint.pth")
    save_lab_checkpoint(build_resnet18_evaluator(), evaluator)
    tests = tmp_path / "mini.json"
    tests.write_text(json.dumps([["red cube"], ["red sphere", "cyan cube"],
                                 ["gray cylinder", "blue cube", "green sphere"]]))
    return {"ckpt": ckpt, "evaluator": evaluator, "tests": str(tests)}


def run(lab, out, *extra):
    main([str(out), "--ckpt", lab["ckpt"], "--evaluator", lab["evaluator"], "--tests",
          lab["tests"], "--steps", "2", "--device", "cpu"] + list(extra))


def test_writes_images_grid_denoising_and_accuracy(tmp_path, lab, capsys):
    out = tmp_path / "out"
    run(lab, out)
    assert sorted(os.listdir(out)) == ["accuracy.json", "denoise.png", "mini", "mini_grid.png"]
    assert sorted(os.listdir(out / "mini")) == ["0.png", "1.png", "2.png"]
    assert Image.open(out / "mini" / "0.png").size == (64, 64)
    width, height = Image.open(out / "denoise.png").size
    assert height == 64 + 4 and width == DENOISE_FRAMES * 66 + 2
    report = json.loads((out / "accuracy.json").read_text())
    assert report["mini"]["labels"] == 6 and report["mini"]["images"] == 3
    assert 0.0 <= report["mini"]["accuracy"] <= 1.0
    assert report["settings"]["classifier_guidance"] == 0.0
    assert "mini: accuracy" in capsys.readouterr().out


def test_same_seed_same_bytes_and_classifier_guidance_changes_images(tmp_path, lab):
    run(lab, tmp_path / "a")
    run(lab, tmp_path / "b")
    run(lab, tmp_path / "c", "--classifier-guidance", "50")
    a, b, c = ((tmp_path / name / "mini" / "1.png").read_bytes() for name in "abc")
    assert a == b and a != c
    assert len(set(sample_seeds(0, 0, 32) + sample_seeds(0, 1, 32) + sample_seeds(1, 0, 32))) == 96


def test_a_separate_guide_classifier_can_steer_instead_of_the_evaluator(tmp_path, lab):
    guide = save_tiny_guide_classifier(tmp_path / "guide.pt", num_labels=24, image_size=64,
                                       patch_size=2)
    run(lab, tmp_path / "evaluator", "--classifier-guidance", "50")
    run(lab, tmp_path / "guide", "--classifier-guidance", "50", "--guide-classifier", guide)
    steered = [(tmp_path / name / "mini" / "1.png").read_bytes() for name in ("evaluator", "guide")]
    assert steered[0] != steered[1]
    report = json.loads((tmp_path / "guide" / "accuracy.json").read_text())
    assert report["settings"]["guide_classifier"] == guide


def test_cross_check_scores_the_images_with_a_second_judge(tmp_path, lab, capsys):
    guide = save_tiny_guide_classifier(tmp_path / "guide.pt", num_labels=24, image_size=64,
                                       patch_size=2)
    run(lab, tmp_path / "plain")
    run(lab, tmp_path / "checked", "--cross-check", guide)
    assert "cross-check" in capsys.readouterr().out.splitlines()[-2]
    report = json.loads((tmp_path / "checked" / "accuracy.json").read_text())
    assert 0.0 <= report["mini"]["cross_check"] <= 1.0
    assert report["settings"]["cross_check"] == guide
    images = [(tmp_path / name / "mini" / "1.png").read_bytes() for name in ("plain", "checked")]
    assert images[0] == images[1]


def test_cross_check_with_a_second_evaluator_in_the_lab_format(tmp_path, lab):
    torch.manual_seed(1)
    other = str(tmp_path / "other.pth")
    save_lab_checkpoint(build_resnet18_evaluator(), other)
    run(lab, tmp_path / "same", "--cross-check", lab["evaluator"])
    run(lab, tmp_path / "other", "--cross-check", other)
    same, second = (json.loads((tmp_path / name / "accuracy.json").read_text())["mini"]
                    for name in ("same", "other"))
    assert same["cross_check"] == same["accuracy"]  # the evaluator judging itself agrees
    assert 0.0 <= second["cross_check"] <= 1.0


@pytest.mark.parametrize("problem, message", [
    ("unknown", "unknown object name.*'pink cube'"),
    ("digit guide", "not an iCLEVR guide classifier"),
    ("digit judge", "not an iCLEVR guide classifier"),
    ("empty", "is empty"),
    ("evaluator", "not an evaluator checkpoint"),
    ("digits", "not an iCLEVR model"),
])
def test_bad_inputs_one_line_and_nothing_written(tmp_path, lab, capsys, problem, message):
    if problem == "unknown":
        (tmp_path / "mini.json").write_text('[["pink cube"]]')
    elif problem == "empty":
        (tmp_path / "mini.json").write_text("")
    elif problem == "evaluator":
        torch.save({"state_dict": {}}, lab["evaluator"])
    elif problem == "digits":
        save_tiny_checkpoint(lab["ckpt"])
    extra = []
    if problem == "digit guide":
        extra = ["--classifier-guidance", "1", "--guide-classifier",
                 save_tiny_guide_classifier(tmp_path / "digit_guide.pt")]
    elif problem == "digit judge":
        extra = ["--cross-check", save_tiny_guide_classifier(tmp_path / "digit_guide.pt")]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda argv: run(lab, out, *extra))
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and "\n" not in error
    assert re.search(message, error)
    assert not out.exists() or os.listdir(out) == []


def test_without_an_evaluator_writes_everything_but_the_accuracy(tmp_path, lab, capsys,
                                                                 monkeypatch):
    monkeypatch.chdir(tmp_path / "..")  # no checkpoint.pth in the working folder
    out = tmp_path / "out"
    main([str(out), "--ckpt", lab["ckpt"], "--tests", lab["tests"], "--steps", "2",
          "--device", "cpu"])
    assert sorted(os.listdir(out)) == ["denoise.png", "mini", "mini_grid.png"]
    printed = capsys.readouterr().out
    skipped = [line for line in printed.splitlines() if line.startswith("accuracy skipped")]
    assert len(skipped) == 1 and "p1.iclevr.train_evaluator" in skipped[0]
    assert "mini: 3 images" in printed


def test_the_lab_evaluator_in_the_working_folder_is_the_default(tmp_path, lab, capsys,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)  # holds the lab fixture's checkpoint.pth
    main([str(tmp_path / "out"), "--ckpt", lab["ckpt"], "--tests", lab["tests"], "--steps", "2",
          "--device", "cpu"])
    assert "mini: accuracy" in capsys.readouterr().out
    assert (tmp_path / "out" / "accuracy.json").exists()


@pytest.mark.parametrize("extra, message", [
    (["--classifier-guidance", "1"], "guidance from the evaluator: pass --evaluator"),
    (["--cross-check", "judge.pth"], "--cross-check compares with the evaluator"),
])
def test_evaluator_options_without_an_evaluator_are_refused(tmp_path, lab, monkeypatch, extra,
                                                            message):
    monkeypatch.chdir(tmp_path / "..")
    with pytest.raises(UserError, match=message):
        main([str(tmp_path / "out"), "--ckpt", lab["ckpt"], "--tests", lab["tests"],
              "--device", "cpu", *extra])
    assert not (tmp_path / "out").exists()


def test_the_shipped_checkpoint_is_an_iclevr_model():
    model, schedule, checkpoint = load_checkpoint(DEFAULT_CHECKPOINTS["ddpm"], torch.device("cpu"))
    assert model.cond_dim == 24 and checkpoint["model_config"]["image_size"] == 64
    assert schedule.num_timesteps == 1000


def test_a_missing_checkpoint_says_how_to_train_one(tmp_path, lab, capsys):
    lab["ckpt"] = str(tmp_path / "missing.pt")
    with pytest.raises(SystemExit):
        run_cli(lambda argv: run(lab, tmp_path / "out"))
    error = capsys.readouterr().err.strip()
    assert "missing.pt" in error and "python3 -m p1.iclevr.train" in error
    assert not (tmp_path / "out").exists()


@pytest.fixture
def gan(tmp_path):
    """A tiny exported GAN generator (16×16, upsampled to 64 by the CLI)."""
    torch.manual_seed(0)
    config = {"z_dim": 8, "cond_dim": 24, "channels": 16, "image_size": 16}
    path = str(tmp_path / "gan.pt")
    torch.save(export_state(Generator(**config).eval(), config, 3), path)
    return path


def test_gan_writes_images_grids_and_accuracy_but_no_denoising_row(tmp_path, lab, gan, capsys):
    for name in ("a", "b"):
        main([str(tmp_path / name), "--model", "gan", "--ckpt", gan, "--evaluator",
              lab["evaluator"], "--tests", lab["tests"], "--device", "cpu"])
    out = tmp_path / "a"
    assert sorted(os.listdir(out)) == ["accuracy.json", "mini", "mini_grid.png"]
    assert Image.open(out / "mini" / "2.png").size == (64, 64)
    assert (out / "mini" / "1.png").read_bytes() == (tmp_path / "b" / "mini" / "1.png").read_bytes()
    report = json.loads((out / "accuracy.json").read_text())
    assert report["settings"]["model"] == "gan" and "sampler" not in report["settings"]
    assert "mini: accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("model, which, message", [
    ("ddpm", "gan", "is a GAN checkpoint: pass --model gan"),
    ("gan", "ckpt", "is a DDPM checkpoint: pass --model ddpm"),
])
def test_a_checkpoint_of_the_other_model_is_named(tmp_path, lab, gan, capsys, model, which,
                                                 message):
    ckpt = gan if which == "gan" else lab["ckpt"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(lambda argv: main([str(tmp_path / "out"), "--model", model, "--ckpt", ckpt,
                                   "--tests", lab["tests"], "--device", "cpu"]))
    assert exit_info.value.code == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("error: ") and message in error and "\n" not in error
    assert not (tmp_path / "out").exists()


def test_gan_refuses_classifier_guidance_and_an_unknown_model(tmp_path, lab, gan, capsys):
    with pytest.raises(UserError, match="does not apply to --model gan"):
        main([str(tmp_path / "out"), "--model", "gan", "--ckpt", gan, "--evaluator",
              lab["evaluator"], "--classifier-guidance", "1", "--tests", lab["tests"]])
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "out"), "--model", "vae"])
    assert exit_info.value.code == 2 and "invalid choice: 'vae'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
