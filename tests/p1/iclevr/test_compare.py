"""python3 -m p1.iclevr.compare: the DDPM-vs-GAN JSON and figure from two result folders."""
import json

import pytest
import torch
from PIL import Image

from p1.errors import UserError
from p1.iclevr.compare import main
from p1.iclevr.gan import Generator, export_state
from tests.p1.fixtures import save_tiny_checkpoint

GAN = {"z_dim": 8, "cond_dim": 24, "channels": 16, "image_size": 16}


def result_folder(root, name, ckpt, score):
    folder = root / name
    folder.mkdir()
    row = {"accuracy": score, "images": 32, "labels": 72, "seconds": 1.5, "cross_check": 0.5}
    (folder / "accuracy.json").write_text(json.dumps(
        {"test": row, "new_test": dict(row, labels=84), "settings": {"ckpt": ckpt}}))
    Image.new("RGB", (530, 266), "gray").save(folder / "test_grid.png")
    return str(folder)


@pytest.fixture
def folders(tmp_path):
    ddpm = str(tmp_path / "ema.pt")
    save_tiny_checkpoint(ddpm)
    gan = str(tmp_path / "gan.pt")
    state = export_state(Generator(**GAN), GAN, 100)
    state["train_seconds"] = 12.5
    torch.save(state, gan)
    return (result_folder(tmp_path, "ddpm", ddpm, 0.75),
            result_folder(tmp_path, "gan", gan, 0.625))


def test_writes_json_and_figure(tmp_path, folders, capsys):
    main([*folders, "--json", str(tmp_path / "cmp.json"), "--figure", str(tmp_path / "cmp.png")])
    rows = json.loads((tmp_path / "cmp.json").read_text())
    assert rows["ddpm"]["files"]["test"]["accuracy"] == 0.75
    assert rows["gan"]["files"]["new_test"]["judge_b"] == 0.5
    assert rows["gan"]["train_seconds"] == 12.5 and rows["ddpm"]["train_seconds"] is None
    assert rows["gan"]["parameters"] == sum(p.numel() for p in Generator(**GAN).parameters())
    assert Image.open(tmp_path / "cmp.png").size == (530, 2 * (266 + 24))
    assert "gan: test 0.6250" in capsys.readouterr().out


def test_refuses_swapped_or_missing_folders(tmp_path, folders):
    with pytest.raises(UserError, match="the ddpm folder holds results of a gan"):
        main([folders[1], folders[0], "--json", str(tmp_path / "cmp.json")])
    with pytest.raises(UserError, match="no .*accuracy.json: run python3 -m p1.iclevr"):
        main([str(tmp_path), folders[1], "--json", str(tmp_path / "cmp.json")])
    assert not (tmp_path / "cmp.json").exists()
