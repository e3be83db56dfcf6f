import json

import numpy as np
import pytest
from PIL import Image

from p2.errors import UserError
from p2.mse import image_mse, main


def write(folder, name, array):
    folder.mkdir(exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(folder / name)


def test_mse_per_image_and_mean(tmp_path, capsys):
    out, gt = tmp_path / "out", tmp_path / "gt"
    write(gt, "00.png", np.zeros((4, 4, 3)))
    write(gt, "01.png", np.full((4, 4, 3), 10))
    write(out, "00.png", np.full((4, 4, 3), 2))  # MSE 4
    write(out, "01.png", np.full((4, 4, 3), 10))  # MSE 0
    assert image_mse(out, gt) == {"00.png": 4.0, "01.png": 0.0}
    main([str(out), str(gt)])
    assert capsys.readouterr().out.splitlines()[-1] == "mean MSE over 2 images: 2.0000"


def test_mse_errors(tmp_path):
    out, gt = tmp_path / "out", tmp_path / "gt"
    with pytest.raises(UserError, match="folder not found"):
        image_mse(out, gt)
    write(gt, "00.png", np.zeros((4, 4, 3)))
    write(out, "01.png", np.zeros((4, 4, 3)))
    with pytest.raises(UserError, match="lacks 1 of the GT images, e.g. 00.png"):
        image_mse(out, gt)
    write(out, "00.png", np.zeros((8, 4, 3)))
    with pytest.raises(UserError, match="image size"):
        image_mse(out, gt)
    (out / "00.png").write_bytes(b"not a png")
    with pytest.raises(UserError, match="cannot read image"):
        image_mse(out, gt)


def test_mse_json(tmp_path):
    out, gt = tmp_path / "out", tmp_path / "gt"
    write(gt, "00.png", np.zeros((4, 4, 3)))
    write(out, "00.png", np.full((4, 4, 3), 3))  # MSE 9
    target = tmp_path / "r" / "mse.json"
    main([str(out), str(gt), "--json", str(target)])
    data = json.loads(target.read_text())
    assert data["per_image"] == {"00.png": 9.0} and data["mean"] == 9.0 and data["images"] == 1
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="cannot write --json"):
        main([str(out), str(gt), "--json", str(tmp_path / "f" / "mse.json")])
