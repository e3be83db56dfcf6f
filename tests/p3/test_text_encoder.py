import pytest
import torch

from p3.model import tiny_config
from p3.text_encoder import TextEncoder


@pytest.fixture(scope="module")
def golden(sd):
    return sd.load("clip_text_tiny_golden.pt")


def build(sd, golden, dtype):
    model = TextEncoder(tiny_config().text)
    model.load_state_dict(sd.weights(golden))
    return model.to(dtype).eval()


def test_keys_match_hf_clip_without_position_ids(golden):
    state = TextEncoder(tiny_config().text).state_dict()
    assert list(state) == [k for k in golden["keys"] if not k.endswith("position_ids")]


def test_float64_last_hidden_state_matches_golden(sd, golden):
    model = build(sd, golden, torch.float64)
    with torch.no_grad():
        out = model(golden["inputs"]["input_ids"])
    sd.assert_close(out, golden["outputs"]["last_hidden_state"])
    with torch.no_grad():
        out32 = build(sd, golden, torch.float32)(golden["inputs"]["input_ids"])
    assert (out32 - golden["outputs"]["last_hidden_state_fp32"].float()).abs().max() < 1e-5


def test_text_states_do_not_depend_on_padding(sd, golden):
    """Causal mask: positions up to EOS are unchanged when the padding changes."""
    model = build(sd, golden, torch.float64)
    ids = golden["inputs"]["input_ids"][:1].clone()
    other = ids.clone()
    other[0, 10:] = 0
    with torch.no_grad():
        a, b = model(ids), model(other)
    assert torch.allclose(a[:, :10], b[:, :10], atol=1e-12)
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_extra_embeddings_match_hf_with_resized_vocabulary(sd, golden):
    """Placeholder ids >= vocab_size read `extra_embeddings`; oracle: HF CLIPTextModel with
    its token table resized and the same rows appended."""
    transformers = pytest.importorskip("transformers")
    cfg = transformers.CLIPTextConfig(**golden["config"])
    oracle = transformers.CLIPTextModel(cfg).double().eval()
    weights = sd.weights(golden)
    if not any(k.startswith("text_model.") for k in oracle.state_dict()):  # transformers >= 5
        weights = {k[len("text_model."):]: v for k, v in weights.items()}
    missing, unexpected = oracle.load_state_dict(weights, strict=False)
    assert not unexpected and all(k.endswith("position_ids") for k in missing)
    extra = torch.randn(2, cfg.hidden_size, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(3))
    oracle.resize_token_embeddings(cfg.vocab_size + 2)
    with torch.no_grad():
        oracle.get_input_embeddings().weight[-2:] = extra
    ids = golden["inputs"]["input_ids"].clone()
    ids[0, 2], ids[0, 4] = 49408, 49409
    model = build(sd, golden, torch.float64)
    with torch.no_grad():
        mine = model(ids, extra)
        ref = oracle(input_ids=ids).last_hidden_state
    sd.assert_close(mine, ref)
