import gzip
import json
import random

import pytest

from p3.tokenizer import DEFAULT_VOCAB, N_MERGES, CLIPTokenizer, bytes_to_unicode, pre_tokenize

WORDS = (
    "a photo of the dog cat shepherd posing proudly on hilltop with Mount Fuji in background "
    "perched park bench Colosseum looming behind streets Paris style David Revoy Manhattan "
    "skyline painting virus monster playing guitar astronaut riding horse watercolor "
    "oil-painting 4k HDR 1990s don't it's we're you've I'm they'll he'd New-York 3D "
    "extraordinarily"
).split()
PUNCTUATION = [",", ".", "!", "?", ";", ":", "'", '"', "(", ")", "-", "&", "#", "...", "!!"]


def random_prompts(n, seed=0):
    rng = random.Random(seed)
    prompts = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 30)):
            word = rng.choice(WORDS)
            word = word.upper() if rng.random() < 0.1 else word
            parts.append(word + (rng.choice(PUNCTUATION) if rng.random() < 0.2 else ""))
            if rng.random() < 0.05:
                parts.append(str(rng.randint(0, 100000)))
        prompts.append(rng.choice([" ", "  ", "\t"]).join(parts) if rng.random() < 0.1
                       else " ".join(parts))
    return prompts


@pytest.fixture(scope="module")
def tokenizer():
    return CLIPTokenizer()


@pytest.fixture(scope="module")
def hf_files(tmp_path_factory):
    """SD v1's HF CLIPTokenizer rebuilt offline from the same BPE file (offline.md §3d).
    Needs ftfy: without it HF falls back to BERT's BasicTokenizer, which SD does not use."""
    pytest.importorskip("transformers")
    pytest.importorskip("ftfy")
    folder = tmp_path_factory.mktemp("clip_tokenizer")
    with gzip.open(DEFAULT_VOCAB, "rt", encoding="utf-8") as f:
        merges = f.read().split("\n")[1 : N_MERGES + 1]
    units = list(bytes_to_unicode().values())
    vocab = units + [u + "</w>" for u in units] + ["".join(m.split()) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    return folder


def hf_tokenizer(hf_files, added=()):
    from transformers import CLIPTokenizer as HFCLIPTokenizer

    tok = HFCLIPTokenizer(str(hf_files / "vocab.json"), str(hf_files / "merges.txt"))
    tok.add_tokens(list(added))
    return tok


def hf_ids(tok, prompts):
    return tok(prompts, truncation=True, max_length=77, padding="max_length")["input_ids"]


def test_known_ids(tokenizer):
    assert tokenizer.encode("") == [49406] + [49407] * 76
    ids = tokenizer.encode("a photo of a cat")
    assert ids[:8] == [49406, 320, 1125, 539, 320, 2368, 49407, 49407]
    assert tokenizer.vocab_size == 49408


def test_pre_tokenize_follows_clip_pattern():
    words = ["don", "'t", "stop", "!'", "s", "1", "2", "ab", "3"]
    assert pre_tokenize("don't stop!'s 12 ab3") == words


def test_long_prompts_are_truncated_to_77(tokenizer):
    ids = tokenizer.encode("dog " * 200)
    assert len(ids) == 77 and ids[0] == 49406 and ids[-1] == 49407 and ids[-2] != 49407


def test_ids_match_hf_clip_tokenizer_on_300_prompts(tokenizer, hf_files):
    prompts = random_prompts(300) + ["", "  ", "a" * 300, "café Zürich"]
    assert tokenizer(prompts) == hf_ids(hf_tokenizer(hf_files), prompts)


@pytest.mark.parametrize("token", ["<new1>", "<NEW2>", "S*", "<cat-toy>", "sks"])
def test_placeholder_is_one_token_like_hf_added_token(hf_files, token):
    tokenizer = CLIPTokenizer(placeholders={token: 1})
    prompts = [f"A {token} shepherd on a hill.", f"in the style of {token}.", f"{token}{token}, x"]
    ids = tokenizer(prompts)
    assert all(row.count(49408) >= 1 for row in ids)
    assert ids == hf_ids(hf_tokenizer(hf_files, [token]), prompts)


def test_placeholder_already_in_the_vocabulary_still_gets_its_own_id():
    """HF would keep the existing id of "*"; we always give placeholders new ids."""
    tokenizer = CLIPTokenizer(placeholders={"*": 1})
    assert tokenizer.encode("a * on a ** hill")[:7] == [49406, 320, 49408, 525, 320, 49408, 49408]


def test_multi_vector_placeholders_get_consecutive_ids():
    tokenizer = CLIPTokenizer(placeholders={"<new1>": 1, "<new2>": 3})
    assert tokenizer.placeholder_ids == {"<new1>": [49408], "<new2>": [49409, 49410, 49411]}
    ids = tokenizer.encode("<new2> and <new1>")
    assert ids[:7] == [49406, 49409, 49410, 49411, 537, 49408, 49407]
