import json

import pytest
import torch

from p1.errors import UserError
from p1.iclevr.labels import (
    TEST_JSONS,
    load_objects,
    multi_hot,
    read_condition_sets,
    read_train_labels,
)


def write(path, content):
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def test_shipped_files_are_the_labs():
    objects = load_objects()
    assert len(objects) == 24 and objects["gray cube"] == 0 and objects["yellow cylinder"] == 23
    assert [objects[n] for n in ("red sphere", "cyan cylinder", "cyan cube")] == [9, 22, 6]
    test = read_condition_sets(TEST_JSONS["test"], objects)
    new_test = read_condition_sets(TEST_JSONS["new_test"], objects)
    assert (len(test), sum(map(len, test))) == (32, 72)
    assert (len(new_test), sum(map(len, new_test))) == (32, 84)


def test_multi_hot():
    objects = load_objects()
    vectors = multi_hot([["gray cube"], ["red sphere", "cyan cube"]], objects)
    assert vectors.shape == (2, 24) and vectors.dtype == torch.float32
    assert vectors[0].nonzero().flatten().tolist() == [0]
    assert vectors[1].nonzero().flatten().tolist() == [6, 9]


def test_train_labels_in_file_order(tmp_path):
    path = write(tmp_path / "train.json", {"b.png": ["red cube"], "a.png": ["red cube",
                                                                            "gray sphere"]})
    assert read_train_labels(path, load_objects()) == [
        ("b.png", ["red cube"]), ("a.png", ["red cube", "gray sphere"])]


@pytest.mark.parametrize("content, message", [
    ('[["red cube"], ["pink cube", "red ball"]]', "unknown object name.*'pink cube', 'red ball'"),
    ("", "not valid JSON"),
    ("[]", "is empty"),
    ('[["red cube"', "not valid JSON"),
    ('{"a": 1}', "expected a list"),
    ('[["red cube", "red cube"]]', "listed twice"),
    ('[[]]', "non-empty list"),
    ('[["red cube", 3]]', "non-empty list"),
])
def test_bad_condition_files_name_the_problem(tmp_path, content, message):
    with pytest.raises(UserError, match=message):
        read_condition_sets(write(tmp_path / "x.json", content), load_objects())


def test_bad_objects_and_train_files(tmp_path):
    with pytest.raises(UserError, match="missing"):
        load_objects(str(tmp_path / "none.json"))
    with pytest.raises(UserError, match="indices"):
        load_objects(write(tmp_path / "objects.json", {"red cube": 0}))
    with pytest.raises(UserError, match="expected a dict"):
        read_train_labels(write(tmp_path / "t.json", [["red cube"]]), load_objects())
    with pytest.raises(UserError, match="'a.png'.*'blue pyramid'"):
        read_train_labels(write(tmp_path / "t.json", {"a.png": ["blue pyramid"]}),
                          load_objects())
