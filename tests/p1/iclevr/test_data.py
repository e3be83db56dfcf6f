import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from p1.errors import UserError
from p1.iclevr.data import load_iclevr


def write_layout(root, entries, size=(40, 30), mode="RGBA"):
    os.makedirs(os.path.join(root, "iclevr"))
    for index, name in enumerate(entries):
        pixels = np.full((size[1], size[0], len(mode)), 40 * index, dtype=np.uint8)
        Image.fromarray(pixels, mode).save(os.path.join(root, "iclevr", name))
    with open(os.path.join(root, "train.json"), "w") as handle:
        json.dump(entries, handle)
    return root


def test_load_iclevr_resizes_and_encodes(tmp_path):
    root = write_layout(str(tmp_path / "d"), {"a.png": ["red cube"],
                                              "b.png": ["red cube", "cyan cylinder"]})
    images, conds = load_iclevr(root)
    assert images.shape == (2, 3, 64, 64) and images.dtype == torch.uint8
    assert images[1].float().mean().item() == pytest.approx(40, abs=1)
    assert conds.tolist()[1][1] == 1.0 and conds.tolist()[1][22] == 1.0 and conds.sum() == 3
    assert load_iclevr(root, limit=1)[0].shape[0] == 1


def test_load_iclevr_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="does not exist .*python3 -m p1.iclevr.render"):
        load_iclevr(str(tmp_path / "none"))
    root = write_layout(str(tmp_path / "d"), {"a.png": ["red cube"]})
    with open(os.path.join(root, "iclevr", "a.png"), "wb") as handle:
        handle.write(b"not a png")
    with pytest.raises(UserError, match="cannot decode image .*a.png"):
        load_iclevr(root)
    os.remove(os.path.join(root, "iclevr", "a.png"))
    with pytest.raises(UserError, match="missing image"):
        load_iclevr(root)
