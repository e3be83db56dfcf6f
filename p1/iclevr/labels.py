"""The lab's label files: objects.json, train.json, test.json / new_test.json.

* ``objects.json``: {name: index} for the 24 objects ("gray cube": 0, ... shape-major).
* ``train.json``: {image file name: [object name, ...]} (1 to 3 objects, no duplicates).
* ``test.json``, ``new_test.json``: [[object name, ...], ...] (32 condition sets each).

Copies of objects.json, test.json and new_test.json ship next to this file. Every problem
with a file is a ``UserError`` naming the file and what is wrong (unknown object names are
listed), never a traceback.
"""
import json
import os
from typing import Dict, List, Sequence, Tuple

import torch

from p1.errors import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
OBJECTS_JSON = os.path.join(HERE, "objects.json")
TEST_JSONS = {"test": os.path.join(HERE, "test.json"),
              "new_test": os.path.join(HERE, "new_test.json")}
NUM_OBJECTS = 24


def read_json(path: str):
    """Parsed JSON of path; UserError if missing, unreadable, malformed or empty."""
    if not os.path.isfile(path):
        raise UserError(f"missing {path}")
    try:
        with open(path, encoding="utf-8") as handle:
            content = json.load(handle)
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"cannot read {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON: {err}") from None
    if not content:
        raise UserError(f"{path} is empty")
    return content


def load_objects(path: str = OBJECTS_JSON) -> Dict[str, int]:
    """{object name: class index}; the indices must be exactly 0..23."""
    objects = read_json(path)
    if (not isinstance(objects, dict) or not all(isinstance(v, int) for v in objects.values())
            or sorted(objects.values()) != list(range(NUM_OBJECTS))):
        raise UserError(f"{path} must map {NUM_OBJECTS} object names to the indices "
                        f"0..{NUM_OBJECTS - 1}")
    return objects


def check_label_set(labels, objects: Dict[str, int], where: str) -> List[str]:
    """labels as a list of known, distinct object names (1 or more), else UserError."""
    if not isinstance(labels, list) or not labels or not all(isinstance(n, str) for n in labels):
        raise UserError(f"{where}: expected a non-empty list of object names, got {labels!r}")
    unknown = [name for name in labels if name not in objects]
    if unknown:
        raise UserError(f"{where}: unknown object name(s) {', '.join(map(repr, unknown))} "
                        "(not in objects.json)")
    if len(set(labels)) != len(labels):
        raise UserError(f"{where}: an object is listed twice in {labels!r}")
    return labels


def read_condition_sets(path: str, objects: Dict[str, int]) -> List[List[str]]:
    """The condition sets of a test.json-style file: a list of lists of object names."""
    content = read_json(path)
    if not isinstance(content, list):
        raise UserError(f"{path}: expected a list of object-name lists")
    return [check_label_set(labels, objects, f"{path} entry {i}")
            for i, labels in enumerate(content)]


def read_train_labels(path: str, objects: Dict[str, int]) -> List[Tuple[str, List[str]]]:
    """(image file name, object names) of a train.json-style file, in file order."""
    content = read_json(path)
    if not isinstance(content, dict):
        raise UserError(f"{path}: expected a dict from image file name to object names")
    return [(name, check_label_set(labels, objects, f"{path} entry {name!r}"))
            for name, labels in content.items()]


def multi_hot(label_sets: Sequence[Sequence[str]], objects: Dict[str, int]) -> torch.Tensor:
    """Multi-hot float vectors (N, 24): 1 at the index of each named object."""
    vectors = torch.zeros(len(label_sets), NUM_OBJECTS)
    for row, labels in enumerate(label_sets):
        for name in labels:
            vectors[row, objects[name]] = 1.0
    return vectors
