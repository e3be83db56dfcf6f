"""hw2_3.sh end to end on a tiny random Stable Diffusion written by the test."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from p3 import generate
from p3.errors import UserError
from p3.model import StableDiffusion, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
INPUT = {
    "0": {"src_image": "dog", "token_name": "<new1>",
          "prompt": ["A <new1> shepherd posing proudly on a hilltop."]},
    "1": {"src_image": "David Revoy", "token_name": "<new2>",
          "prompt": ["Paris in the style of <new2>.", "Manhattan in the style of <new2>."]},
}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny CompVis-layout checkpoint, learned embeddings for <new1>/<new2>, input.json."""
    root = tmp_path_factory.mktemp("p3_generate")
    torch.manual_seed(0)
    state = StableDiffusion(tiny_config()).state_dict()
    torch.save({"state_dict": {**state, "betas": torch.zeros(1000)}}, str(root / "tiny.ckpt"))
    (root / "emb").mkdir()
    torch.save({"token": "<new1>", "embedding": torch.randn(1, 32)}, str(root / "emb" / "a.pt"))
    torch.save({"token": "<new2>", "embedding": torch.randn(2, 32)}, str(root / "emb" / "b.pt"))
    write_json(root / "input.json", INPUT)
    return root


def write_json(path, data):
    path.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return str(path)


def argv(files, out, json_path=None, ckpt=None, *extra):
    return [json_path or str(files / "input.json"), str(out), ckpt or str(files / "tiny.ckpt"),
            "--config", "tiny", "--device", "cpu", "--embeddings-dir", str(files / "emb"),
            *extra]


def pngs(folder):
    return sorted(os.path.relpath(os.path.join(r, f), folder)
                  for r, _, fs in os.walk(folder) for f in fs)


def test_writes_25_images_per_prompt_independent_of_batch_size(files, tmp_path, capsys):
    single = {"0": INPUT["0"]}
    json_path = write_json(tmp_path / "one.json", single)
    generate.main(argv(files, tmp_path / "a", json_path, None, "--steps", "2", "--batch-size", "5"))
    generate.main(argv(files, tmp_path / "b", json_path, None, "--steps", "2", "--batch-size", "3"))
    names = pngs(tmp_path / "a")
    assert names == sorted(f"0/0/source0_prompt0_{n}.png" for n in range(25))
    assert names == pngs(tmp_path / "b")
    for name in names:
        a, b = (torch.from_numpy(np.array(Image.open(tmp_path / d / name))).int() for d in "ab")
        assert (a - b).abs().max() <= 1, name  # float32 CPU kernels may differ in the last bit
    assert Image.open(tmp_path / "a" / names[0]).size == (16, 16)
    first = tmp_path / "a" / "0/0/source0_prompt0_0.png"
    assert first.read_bytes() != (tmp_path / "a" / "0/0/source0_prompt0_1.png").read_bytes()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".hw2_3-")]
    assert "plan: 25 images (1 prompts x 25) in 9 batches of <= 3" in capsys.readouterr().out


def test_planned_run_prints_plan_and_fills_every_prompt_folder(files, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "0").mkdir()  # empty folders in OUT are fine
    generate.main(argv(files, out, None, None, "--max-steps", "2", "--batch-size", "8"))
    printed = capsys.readouterr().out
    assert "measured at batch 8" in printed and "plan: 75 images (3 prompts x 25)" in printed
    assert "wrote 75 images" in printed
    for key, prompt in [("0", 0), ("1", 0), ("1", 1)]:
        assert len(os.listdir(out / key / str(prompt))) == 25


def test_plan_steps_fits_the_budget():
    assert generate.plan_steps(100.0, 10, 0.2, 0.5, "dpmpp2m", 50, 10) == 47
    assert generate.plan_steps(1000.0, 10, 0.2, 0.5, "dpmpp2m", 50, 10) == 50
    assert generate.plan_steps(1.0, 10, 0.2, 0.5, "dpmpp2m", 50, 10) == 10


def test_sample_seed_depends_on_every_field_only():
    seeds = {generate.sample_seed(42, k, i, n) for k in "01" for i in range(2) for n in range(25)}
    assert len(seeds) == 100
    assert generate.sample_seed(42, "0", 0, 0) == generate.sample_seed(42, "0", 0, 0)


BAD_JSON = [
    ("{not json", "is not valid JSON"),
    ("[]", "expected a non-empty object"),
    ({"0": {"prompt": ["a <new1>"]}}, "missing key 'token_name'"),
    ({"0": {"token_name": "<new1>"}}, "missing key 'prompt'"),
    ({"0": {"token_name": "<new1>", "prompt": []}}, "non-empty list"),
    ({"../x": {"token_name": "<new1>", "prompt": ["a"]}}, "folder name"),
    ({"0": {"token_name": "<new9>", "prompt": ["a <new9> dog"]}}, "uses token <new9>"),
    ({"0": {"token_name": "<new9>", "prompt": ["a <new9>"], "src_image": ""}}, "'src_image' must"),
    ({"0": {"token_name": "<new9>", "prompt": ["a <new9>"], "src_image": 3}}, "'src_image' must"),
    ({"0": {"token_name": "<new9>", "prompt": ["a <new9>"], "src_image": [" "]}},
     "'src_image' must"),
]


@pytest.mark.parametrize("content, message", BAD_JSON)
def test_bad_input_json_is_one_clear_error(files, tmp_path, content, message):
    json_path = write_json(tmp_path / "in.json", content)
    with pytest.raises(UserError, match=message):
        generate.main(argv(files, tmp_path / "out", json_path))
    assert not (tmp_path / "out").exists()


def test_missing_json_and_checkpoint(files, tmp_path):
    with pytest.raises(UserError, match="input json not found"):
        generate.main(argv(files, tmp_path / "out", str(tmp_path / "nope.json")))
    with pytest.raises(UserError, match="checkpoint not found"):
        generate.main(argv(files, tmp_path / "out", None, str(tmp_path / "nope.ckpt")))


def test_output_folder_with_files_is_refused(files, tmp_path):
    (tmp_path / "out" / "0").mkdir(parents=True)
    (tmp_path / "out" / "0" / "old.png").write_bytes(b"")
    with pytest.raises(UserError, match="already has files in it"):
        generate.main(argv(files, tmp_path / "out"))


def test_no_gpu_warns_and_uses_cpu(monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert generate.resolve_device("auto").type == "cpu"
    assert "very slow" in capsys.readouterr().err
    with pytest.raises(UserError, match="no CUDA GPU"):
        generate.resolve_device("cuda")
    with pytest.raises(UserError, match="not a device"):
        generate.resolve_device("gpu0")


def test_hw2_3_sh_reports_one_line_and_exit_status_1(files, tmp_path):
    """The shell entry point: bad checkpoint -> one `error:` line naming the first keys."""
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {"conv.weight": torch.zeros(1)}}, str(foreign))
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    command = ["bash", os.path.join(ROOT, "hw2_3.sh")]
    command += argv(files, tmp_path / "out", None, str(foreign))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing keys, first: model.diffusion_model" in errors[0]
    assert "unexpected keys, first: conv.weight" in errors[0]
    assert "Traceback" not in result.stderr


def empty_embeddings(files, out, json_path, *extra):
    """argv for a run with no learned embeddings at all."""
    args = argv(files, out, json_path, None, *extra)
    empty = os.path.join(os.path.dirname(json_path), "no_embeddings")
    os.makedirs(empty, exist_ok=True)
    args[args.index("--embeddings-dir") + 1] = empty
    return args


def test_tokens_without_embeddings_use_their_src_image_words(files, tmp_path, capsys):
    json_path = write_json(tmp_path / "in.json", INPUT)
    generate.main(empty_embeddings(files, tmp_path / "out", json_path, "--steps", "1",
                                   "--batch-size", "25"))
    for key, prompt in [("0", 0), ("1", 0), ("1", 1)]:
        assert len(os.listdir(tmp_path / "out" / key / str(prompt))) == 25
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == 2
    assert "<new1>" in warnings[0] and "'dog'" in warnings[0]
    assert "p3.train --concept 0" in warnings[0]
    assert "<new2>" in warnings[1] and "'David Revoy'" in warnings[1]


def test_fallback_gives_the_same_images_as_the_words_typed_in(files, tmp_path):
    """Same ids for the text encoder: the images equal those of the prompt with the words."""
    fallback = write_json(tmp_path / "token.json", {"0": INPUT["0"]})
    typed = dict(INPUT["0"], prompt=["A dog shepherd posing proudly on a hilltop."])
    typed = write_json(tmp_path / "typed.json", {"0": typed})
    for name, json_path in [("token", fallback), ("typed", typed)]:
        generate.main(empty_embeddings(files, tmp_path / name, json_path, "--steps", "1",
                                       "--batch-size", "25"))
    names = pngs(tmp_path / "token")
    assert len(names) == 25 and names == pngs(tmp_path / "typed")
    for name in names:
        assert (tmp_path / "token" / name).read_bytes() == (tmp_path / "typed" / name).read_bytes()


def test_learned_embedding_wins_and_the_other_token_falls_back(files, tmp_path, capsys):
    (tmp_path / "emb").mkdir()
    torch.save({"token": "<new1>", "embedding": torch.randn(1, 32)}, str(tmp_path / "emb" / "a.pt"))
    mixed = {"0": INPUT["0"], "1": dict(INPUT["1"], prompt=["a <new1> next to <new2>"])}
    args = argv(files, tmp_path / "out", write_json(tmp_path / "in.json", mixed), None,
                "--steps", "1", "--batch-size", "25")
    args[args.index("--embeddings-dir") + 1] = str(tmp_path / "emb")
    generate.main(args)
    assert pngs(tmp_path / "out") == sorted(
        [f"0/0/source0_prompt0_{n}.png" for n in range(25)]
        + [f"1/0/source1_prompt0_{n}.png" for n in range(25)])
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == 1 and "<new2>" in warnings[0]
    assert generate.substitute_words("a <new1> next to <new2>", {"<new2>": "David Revoy"}) == (
        "a <new1> next to David Revoy")


def test_private_style_json_other_counts_spellings_and_unicode(files, tmp_path):
    private = {
        "0": {"src_image": "cat", "token_name": "<cat-toy>",
              "prompt": ["a <cat-toy> on a café table", "<cat-toy>", "two <cat-toy>s, 東京"]},
        "7": {"src_image": "猫の絵", "token_name": "<猫>", "prompt": ["a painting of <猫>"]},
    }
    json_path = write_json(tmp_path / "in.json", json.dumps(private, ensure_ascii=False))
    generate.main(empty_embeddings(files, tmp_path / "out", json_path, "--steps", "1",
                                   "--batch-size", "25"))
    expected = [(k, i) for k, n in [("0", 3), ("7", 1)] for i in range(n)]
    for key, prompt in expected:
        assert sorted(os.listdir(tmp_path / "out" / key / str(prompt))) == sorted(
            f"source{key}_prompt{prompt}_{n}.png" for n in range(25))
    assert len(pngs(tmp_path / "out")) == 100
