import hashlib
import json
import os

import numpy as np
import pytest

from p1.errors import UserError
from p1.iclevr.labels import load_objects, read_train_labels
from p1.iclevr.render import Camera, SceneObject, build, main, render


def digest(folder):
    files = sorted(os.listdir(folder))
    return hashlib.sha256(b"".join(open(os.path.join(folder, f), "rb").read()
                                   for f in files)).hexdigest()


def test_render_draws_each_object_in_its_colour():
    camera = Camera(np.array([0.0, 5.0, -6.5]), np.array([0.0, 0.0, 0.5]), 46.0)
    light = np.array([-0.5, 1.0, -0.6]) / np.linalg.norm([-0.5, 1.0, -0.6])
    objects = [SceneObject("red sphere", -1.5, 0.0, 0.7, 0.0, False),
               SceneObject("blue cube", 1.5, 0.0, 0.7, 0.3, True),
               SceneObject("green cylinder", 0.0, 2.0, 0.5, 0.0, False)]
    image, visible = render(objects, camera, light, 64, 48)
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8
    assert (visible > 40).all()
    empty, none_visible = render([], camera, light, 64, 48)
    assert none_visible.shape == (0,)
    changed = np.abs(image.astype(int) - empty.astype(int)).sum(2) > 30
    red = changed & (image[:, :, 0] > image[:, :, 1] + 40) & (image[:, :, 0] > image[:, :, 2] + 40)
    blue = changed & (image[:, :, 2] > image[:, :, 0] + 40)
    # right-handed world, camera looking along +z with y up: +x is on the image's left
    assert red[:, 32:].sum() > 20 and red[:, :32].sum() == 0
    assert blue[:, :32].sum() > 20 and blue[:, 32:].sum() == 0


def test_build_writes_the_labs_layout_with_nested_scenes(tmp_path):
    out = str(tmp_path / "data")
    assert build(out, scenes=2, width=48, height=36, seed=3) == 6
    assert sorted(os.listdir(out)) == ["iclevr", "new_test.json", "objects.json", "test.json",
                                       "train.json"]
    entries = read_train_labels(os.path.join(out, "train.json"), load_objects())
    names = [name for name, _ in entries]
    assert names == [f"CLEVR_train_{s:06d}_{k}.png" for s in range(2) for k in range(3)]
    assert sorted(os.listdir(os.path.join(out, "iclevr"))) == sorted(names)
    for scene in range(2):
        sets = [labels for _, labels in entries[3 * scene:3 * scene + 3]]
        assert [len(s) for s in sets] == [1, 2, 3]
        assert sets[0] == sets[1][:1] and sets[1] == sets[2][:2]
    again = str(tmp_path / "again")
    build(again, scenes=2, width=48, height=36, seed=3)
    assert digest(os.path.join(out, "iclevr")) == digest(os.path.join(again, "iclevr"))
    with open(os.path.join(out, "train.json")) as a, open(os.path.join(again, "train.json")) as b:
        assert json.load(a) == json.load(b)


def test_build_refuses_to_overwrite_and_bad_arguments(tmp_path, capsys):
    out = str(tmp_path / "data")
    build(out, scenes=1, width=32, height=24, seed=0)
    with pytest.raises(UserError, match="already exists"):
        build(out, scenes=1, width=32, height=24, seed=0)
    with pytest.raises(UserError, match="--scenes"):
        main([str(tmp_path / "other"), "--scenes", "0"])
    assert not os.path.exists(str(tmp_path / "other" / "iclevr"))
