"""A complete set of report inputs in a temporary folder: every results JSON in the format its
tool writes, and small PNG figures. Numbers are arbitrary fixture values, chosen to be easy to
find in the PDF text."""
import json
import os

from PIL import Image

from report.items import ITEMS

P1_SCORE = {"tool": "p1.score", "scored": "/tmp/out", "mean_accuracy": 0.9375,
            "datasets": {"mnistm": {"accuracy": 0.9123, "correct": 456, "total": 500,
                                    "judge": "grader LeNet (Classifier.pth)"},
                         "svhn": {"accuracy": 0.9627, "correct": 481, "total": 500,
                                  "judge": "stand-in SVHN CNN (svhn_classifier.pt)"}}}
P1_QUALITY = {"tool": "p1.benchmark quality", "checkpoint_step": 15000, "per_class": 10,
              "images_per_spec": 200, "seed": 0, "device": "cpu", "threads": 1,
              "torch": "1.11.0", "rows": [
                  {"sampler": "dpm++", "model_calls": 20, "guidance": 4.0,
                   "classifier_guidance": 5.0, "mnistm_accuracy": 0.985,
                   "svhn_accuracy": 0.975, "seconds_per_1000_images": 413.2}]}
P2_MSE = {"tool": "p2.mse", "per_image": {f"{i:02d}.png": 1.25 + i for i in range(10)},
          "mean": 5.75, "images": 10}
P2_NORMS = {"tool": "p2.interpolation_norms", "source": "fixture noises",
            "values_per_noise": 196608, "cosine_between_noises": 0.0, "angle_degrees": 90.01,
            "rows": [{"alpha": a / 10, "linear_norm_over_sqrt_d": 0.8, "linear_std": 0.8,
                      "slerp_norm_over_sqrt_d": 1.0, "independent_gaussian_std": 0.8}
                     for a in range(11)]}
P3_ZEROSHOT = {"tool": "p3.zeroshot", "template": "A photo of {label}.", "accuracy": 0.5648,
               "correct": 1412, "total": 2500, "classes": 50,
               "successes": [{"image": f"0_{450 + i}.png", "true": "bicycle",
                              "predicted": "bicycle"} for i in range(5)],
               "failures": [{"image": f"13_{450 + i}.png", "true": "willow_tree",
                             "predicted": "oak_tree"} for i in range(5)]}
P3_SCORE = {"tool": "p3.score", "passed": 3, "cases": 4, "prompts": [
    {"concept": "0", "prompt_index": i, "prompt_4_clip_eval": "A dog.", "image": 80.5 + i,
     "text": 33.25, "baseline": [79, 34], "passed": i > 0} for i in range(4)]}


def lab6_accuracy(test=0.8472, new_test=0.9048, guidance=4.0, classifier_guidance=0.0):
    return {"test": {"accuracy": test, "images": 32, "labels": 72, "seconds": 36.5},
            "new_test": {"accuracy": new_test, "images": 32, "labels": 84, "seconds": 35.25},
            "settings": {"sampler": "dpm++", "steps": 50, "guidance": guidance,
                         "classifier_guidance": classifier_guidance, "guide_classifier": None,
                         "seed": 0, "ckpt": "p1/iclevr/ddpm_iclevr.pt",
                         "evaluator": "stand-in/checkpoint.pth", "cross_check": None}}


JSONS = {"p1.score": P1_SCORE, "p1.quality": P1_QUALITY, "p2.mse": P2_MSE, "p2.norms": P2_NORMS,
         "p3.zeroshot": P3_ZEROSHOT, "p3.score": P3_SCORE, "lab6.accuracy": lab6_accuracy(),
         "lab6.gan": {name: {"model": name, "parameters": parameters, "train_seconds": seconds,
                             "step": 100, "settings": {},
                             "files": {stem: {"accuracy": accuracy, "judge_b": None,
                                              "seconds": 2.5, "images": 32, "labels": labels}
                                       for stem, labels in (("test", 72), ("new_test", 84))}}
                      for name, parameters, seconds, accuracy in (
                          ("ddpm", 2_900_000, None, 0.8472), ("gan", 640_000, 3600.0, 0.6111))}}


def write_json(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as handle:
        json.dump(data, handle)


def make_results(root, skip=()):
    """Every item of report.items.ITEMS under ``root`` except the keys in ``skip``."""
    for item in ITEMS:
        if item.key in skip:
            continue
        path = os.path.join(root, item.path)
        if item.kind == "png":
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.new("RGB", (40, 20), (30, 120, 200)).save(path)
        elif item.key.startswith("lab6.ablation."):
            write_json(path, lab6_accuracy(0.5, 0.6, guidance=2.0))
        else:
            write_json(path, JSONS[item.key])
    return root
