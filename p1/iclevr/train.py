"""Train the Lab 6 DDPM on iCLEVR with the shared DDPM training loop (``p1.train``).

    python3 -m p1.iclevr.train --data iclevr_data --out runs/iclevr [--steps 15000] ...
    torchrun --nproc_per_node 4 -m p1.iclevr.train ...

Every option and output of ``python3 -m p1.train`` (resume, ``ema.pt``, ``loss.csv``, sample
grids); the defaults are iCLEVR's: 64×64 images folded into 2×2 patches (a 32×32 UNet),
channels ×(1, 2, 4), the cosine schedule, and sample grids of the 32 sets of test.json.
"""
from p1.errors import run_cli
from p1.iclevr.data import load_iclevr
from p1.iclevr.labels import TEST_JSONS, load_objects, multi_hot, read_condition_sets
from p1.train import TrainingSet, parse_args, train

MODEL_CONFIG = {"image_size": 64, "patch_size": 2, "channel_mults": (1, 2, 4)}


def test_json_grid_conditions():
    """(conditions (32, 24) of test.json, images per row 8)."""
    objects = load_objects()
    return multi_hot(read_condition_sets(TEST_JSONS["test"], objects), objects), 8


def iclevr_training_set(args) -> TrainingSet:
    images, conds = load_iclevr(args.data, limit=args.limit)
    return TrainingSet(images, conds, MODEL_CONFIG, {"kind": "cosine"}, "iclevr24",
                       test_json_grid_conditions)


def main(argv=None) -> None:
    args = parse_args(argv, description=__doc__.split("\n\n")[0], data="iclevr_data",
                      out="runs/iclevr")
    train(args, iclevr_training_set)


if __name__ == "__main__":
    run_cli(main)
