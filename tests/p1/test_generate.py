import os
import subprocess
import sys

import pytest
import torch

from p1.errors import UserError
from p1.generate import check_output_folder, main
from tests.p1.fixtures import TINY_MODEL, save_tiny_checkpoint, save_tiny_guide_classifier

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FAST = ["--steps", "3", "--per-class", "2", "--device", "cpu", "--model-chunk", "8",
        "--classifier-guidance", "0"]  # the shipped guide classifier is for T = 1000


def read_all(out_dir):
    return {(d, n): open(os.path.join(out_dir, d, n), "rb").read()
            for d in ("mnistm", "svhn") for n in os.listdir(os.path.join(out_dir, d))}


def test_writes_exactly_the_grader_files(tmp_path, tiny_checkpoint, capsys):
    main([str(tmp_path / "out"), "--ckpt", tiny_checkpoint] + FAST)
    assert sorted(os.listdir(tmp_path / "out")) == ["mnistm", "svhn"]
    for dataset in ("mnistm", "svhn"):
        names = sorted(os.listdir(tmp_path / "out" / dataset))
        assert names == [f"{d}_{n:03d}.png" for d in range(10) for n in (1, 2)]
    assert "wrote 40 images" in capsys.readouterr().out


def test_byte_identical_and_batch_size_independent(tmp_path, tiny_checkpoint):
    main([str(tmp_path / "a"), "--ckpt", tiny_checkpoint, "--batch-size", "40"] + FAST)
    main([str(tmp_path / "b"), "--ckpt", tiny_checkpoint, "--batch-size", "40"] + FAST)
    main([str(tmp_path / "c"), "--ckpt", tiny_checkpoint, "--batch-size", "7"] + FAST)
    first = read_all(tmp_path / "a")
    assert first == read_all(tmp_path / "b") == read_all(tmp_path / "c")
    main([str(tmp_path / "d"), "--ckpt", tiny_checkpoint, "--seed", "1"] + FAST)
    assert first != read_all(tmp_path / "d")


def test_classifier_guided_images_do_not_depend_on_the_batch_size(tmp_path, tiny_checkpoint,
                                                                   tiny_guide_classifier):
    guide = ["--classifier-guidance", "30", "--guide-classifier", tiny_guide_classifier]
    main([str(tmp_path / "a"), "--ckpt", tiny_checkpoint, "--batch-size", "40"] + FAST + guide)
    main([str(tmp_path / "b"), "--ckpt", tiny_checkpoint, "--batch-size", "7"] + FAST + guide)
    assert read_all(tmp_path / "a") == read_all(tmp_path / "b")


@pytest.mark.parametrize("sampler", ["ddim", "ddpm"])
def test_other_samplers(tmp_path, tiny_checkpoint, sampler):
    main([str(tmp_path / "o"), "--ckpt", tiny_checkpoint, "--sampler", sampler,
          "--guidance", "1"] + FAST)
    assert len(os.listdir(tmp_path / "o" / "svhn")) == 20


def test_rerun_replaces_own_files_and_refuses_strangers(tmp_path, tiny_checkpoint):
    out = tmp_path / "out"
    main([str(out), "--ckpt", tiny_checkpoint] + FAST)
    (out / "notes.txt").write_text("kept")
    main([str(out), "--ckpt", tiny_checkpoint, "--per-class", "1", "--steps", "2",
          "--classifier-guidance", "0"])
    assert len(os.listdir(out / "mnistm")) == 10 and (out / "notes.txt").read_text() == "kept"
    (out / "svhn" / "readme.txt").write_text("x")
    before = read_all(out)
    with pytest.raises(UserError, match="did not write .*readme.txt"):
        main([str(out), "--ckpt", tiny_checkpoint] + FAST)
    assert read_all(out) == before
    (out / "svhn" / "readme.txt").unlink()
    (out / "svhn" / "0_003.png").mkdir()
    with pytest.raises(UserError, match="did not write"):
        check_output_folder(str(out))


def test_checkpoint_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(UserError, match="no checkpoint at .*train one"):
        main([str(tmp_path / "o"), "--ckpt", str(tmp_path / "missing.pt")] + FAST)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x00" * 10)
    with pytest.raises(UserError, match="cannot read checkpoint"):
        main([str(tmp_path / "o"), "--ckpt", str(garbage)] + FAST)
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="not a p1 checkpoint"):
        main([str(tmp_path / "o"), "--ckpt", str(tmp_path / "other.pt")] + FAST)
    wrong = torch.load(tiny_checkpoint)
    wrong["model_config"] = dict(TINY_MODEL, base_channels=16)
    torch.save(wrong, tmp_path / "wrong.pt")
    with pytest.raises(UserError, match="does not match the model"):
        main([str(tmp_path / "o"), "--ckpt", str(tmp_path / "wrong.pt")] + FAST)
    labels = save_tiny_checkpoint(tmp_path / "labels.pt", cond_dim=24)
    with pytest.raises(UserError, match="not a digit model"):
        main([str(tmp_path / "o"), "--ckpt", labels] + FAST)
    assert not (tmp_path / "o").exists()


def test_bad_options(tmp_path, tiny_checkpoint):
    out = str(tmp_path / "o")
    with pytest.raises(UserError, match="CUDA is not available"):
        if torch.cuda.is_available():
            raise UserError("CUDA is not available (skipped: this machine has one)")
        main([out, "--ckpt", tiny_checkpoint, "--device", "cuda"])
    with pytest.raises(UserError, match="--steps"):
        main([out, "--ckpt", tiny_checkpoint, "--steps", "21", "--device", "cpu"])
    with pytest.raises(UserError, match="--batch-size"):
        main([out, "--ckpt", tiny_checkpoint, "--batch-size", "0"])
    with pytest.raises(UserError, match="--model-chunk"):
        main([out, "--ckpt", tiny_checkpoint, "--model-chunk", "0"])
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        main([str(tmp_path / "file"), "--ckpt", tiny_checkpoint])


def test_classifier_guidance_steers_and_is_checked(tmp_path, tiny_checkpoint,
                                                   tiny_guide_classifier):
    plain, steered = tmp_path / "plain", tmp_path / "steered"
    main([str(plain), "--ckpt", tiny_checkpoint] + FAST)
    main([str(steered), "--ckpt", tiny_checkpoint] + FAST + ["--classifier-guidance", "50",
                                                         "--guide-classifier",
                                                         tiny_guide_classifier])
    assert read_all(plain) != read_all(steered)
    out = str(tmp_path / "o")
    with pytest.raises(UserError, match="--classifier-guidance must be >= 0"):
        main([out, "--ckpt", tiny_checkpoint] + FAST + ["--classifier-guidance", "-1"])
    with pytest.raises(UserError, match="no guide classifier"):
        main([out, "--ckpt", tiny_checkpoint] + FAST + [
            "--classifier-guidance", "1", "--guide-classifier", str(tmp_path / "none.pt")])
    for other in (save_tiny_guide_classifier(tmp_path / "t50.pt", num_timesteps=50),
                  save_tiny_guide_classifier(tmp_path / "cos.pt", kind="cosine")):
        with pytest.raises(UserError, match="another noise schedule"):
            main([out, "--ckpt", tiny_checkpoint] + FAST + [
                "--classifier-guidance", "1", "--guide-classifier", other])
    assert not os.path.exists(out)


def test_shipped_checkpoint_and_guide_classifier_work_together(tmp_path):
    main([str(tmp_path / "out"), "--per-class", "1", "--steps", "2", "--device", "cpu",
          "--model-chunk", "40"])  # the defaults: p1/ddpm_digits.pt + p1/guide_classifier.pt
    assert len(read_all(tmp_path / "out")) == 20


def test_hw2_1_script_end_to_end(tmp_path, tiny_checkpoint):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    done = subprocess.run(["bash", os.path.join(REPO, "hw2_1.sh"), str(tmp_path / "out"),
                           "--ckpt", tiny_checkpoint] + FAST, capture_output=True, text=True,
                          env=env, cwd=str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert " s (dpm++" in done.stdout
    missing = subprocess.run(["bash", os.path.join(REPO, "hw2_1.sh"), str(tmp_path / "x"),
                              "--ckpt", str(tmp_path / "none.pt")], capture_output=True,
                             text=True, env=env, cwd=str(tmp_path))
    assert missing.returncode == 1
    assert missing.stderr.startswith("error: no checkpoint") and "Traceback" not in missing.stderr
