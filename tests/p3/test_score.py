"""The P3 grading rule on a tiny random CLIP (no weights are downloaded)."""

import json

import pytest
import torch
from PIL import Image

from p3.errors import UserError
from p3.score import PromptScore, main, read_input_json, top_k_means


def spec():
    return {
        "0": {
            "token_name": "<new1>",
            "prompt": ["A <new1> dog.", "A <new1> cat."],
            "prompt_4_clip_eval": ["A dog.", "A cat."],
            "baseline": [[-1000, -1000], [1000, 1000]],
        },
    }


def make_case(tmp_path, count=25):
    """input.json, SRC/0 with 3 references, OUT/0/{0,1} with `count` images each."""
    (tmp_path / "input.json").write_text(json.dumps(spec()))
    generator = torch.Generator().manual_seed(0)

    def save(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = torch.randint(0, 256, (40, 40, 3), generator=generator, dtype=torch.uint8)
        Image.fromarray(pixels.numpy()).save(path)

    for n in range(3):
        save(tmp_path / "src" / "0" / f"{n:02d}.jpg")
    for i in range(2):
        for n in range(count):
            save(tmp_path / "out" / "0" / str(i) / f"source0_prompt{i}_{n}.png")
    return [
        f"--json={tmp_path / 'input.json'}",
        f"--src={tmp_path / 'src'}",
        f"--out={tmp_path / 'out'}",
    ]


def test_top_k_means_ranks_by_image_plus_2_5_text():
    image = torch.tensor([80.0, 70.0, 90.0, 60.0, 75.0, 50.0, 85.0])
    text = torch.tensor([30.0, 40.0, 20.0, 35.0, 30.0, 10.0, 31.0])
    # totals: 155, 170, 140, 147.5, 150, 75, 162.5 -> best five: 1, 6, 0, 4, 3
    assert top_k_means(image, text) == pytest.approx(
        ((70 + 85 + 80 + 75 + 60) / 5, (40 + 31 + 30 + 30 + 35) / 5)
    )


def test_prompt_passes_only_when_both_means_reach_the_baseline():
    assert PromptScore("0", 0, 79.0, 34.0, (79, 34)).passed
    assert not PromptScore("0", 0, 80.0, 33.9, (79, 34)).passed


def test_scores_every_prompt_folder(tmp_path, tiny_clip, capsys):
    main([*make_case(tmp_path), f"--clip={tiny_clip}"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("concept 0 prompt 0: image") and lines[0].endswith("PASS")
    assert lines[1].endswith("FAIL")
    assert lines[-1] == "You have passed 1/2 cases"


def test_image_score_is_100_cosine_against_the_references(tmp_path, tiny_clip):
    from p3.score import clip_scores, load_clip, read_images

    make_case(tmp_path)
    model, processor = load_clip(str(tiny_clip), torch.device("cpu"))
    generated = read_images(tmp_path / "out" / "0" / "0")
    references = read_images(tmp_path / "src" / "0")
    image_score, text_score = clip_scores(model, processor, generated, references, "A dog.")
    with torch.no_grad():
        for j in (0, 7):
            cosines = [
                model(**processor(text=["A dog."], images=[generated[j], ref], return_tensors="pt"))
                .image_embeds.prod(0)
                .sum()
                for ref in references
            ]
            assert image_score[j].item() == pytest.approx(
                100 * torch.stack(cosines).mean().item(), abs=1e-4
            )
            logit = model(
                **processor(text=["A dog."], images=[generated[j]], return_tensors="pt")
            ).logits_per_image
            assert text_score[j].item() == pytest.approx(logit.item(), abs=1e-4)


def test_wrong_image_count_is_an_error(tmp_path, tiny_clip):
    with pytest.raises(UserError, match="holds 24 images; the grader needs exactly 25"):
        main([*make_case(tmp_path, count=24), f"--clip={tiny_clip}"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_error(tmp_path, tiny_clip):
    with pytest.raises(UserError, match="no CUDA GPU"):
        main([*make_case(tmp_path, count=1), f"--clip={tiny_clip}", "--device=cuda"])


def test_missing_clip_says_where_to_put_it(tmp_path):
    pytest.importorskip("transformers")
    with pytest.raises(UserError, match="not found locally: download openai/clip-vit-base-patch32"):
        main([*make_case(tmp_path, count=1), f"--clip={tmp_path / 'no_clip'}"])


@pytest.mark.parametrize(
    "text, message",
    [
        ("{", "not valid JSON"),
        ("[]", "must map concept keys"),
        ('{"0": {"prompt": []}}', "lacks prompt_4_clip_eval"),
    ],
)
def test_malformed_input_json(tmp_path, text, message):
    path = tmp_path / "input.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        read_input_json(path)
    with pytest.raises(UserError, match="not found"):
        read_input_json(tmp_path / "absent.json")


def test_scores_as_json(tmp_path, tiny_clip):
    target = tmp_path / "results" / "score.json"
    main([*make_case(tmp_path), f"--clip={tiny_clip}", f"--json-out={target}"])
    data = json.loads(target.read_text())
    assert (data["passed"], data["cases"]) == (1, 2)
    assert [p["passed"] for p in data["prompts"]] == [True, False]
    assert set(data["prompts"][0]) >= {"image", "text", "baseline", "prompt_4_clip_eval"}


def test_unwritable_json_out_fails_before_scoring(tmp_path):
    (tmp_path / "f").write_text("")
    with pytest.raises(UserError, match="cannot write --json"):
        main([*make_case(tmp_path, count=1), f"--json-out={tmp_path / 'f' / 'x.json'}"])
