"""CLIP byte-level BPE tokenizer as SD v1's `FrozenCLIPEmbedder` uses it (sd_v1.md §6).

Ids are those of HF `CLIPTokenizer` for `openai/clip-vit-large-patch14`: 49406 (start), the
BPE tokens, 49407 (end), truncated to 77 and padded with 49407. Placeholder tokens (textual
inversion, e.g. "<new1>") are matched literally in the raw prompt, whatever their spelling,
and each becomes its own ids >= 49408.

The vocabulary is OpenAI's `bpe_simple_vocab_16e6.txt.gz` (MIT), shipped in `p3/assets/`.
"""
import functools
import gzip
import os
import re
import unicodedata
from typing import Dict, List, Optional, Sequence

from .errors import UserError

DEFAULT_VOCAB = os.path.join(os.path.dirname(__file__), "assets", "bpe_simple_vocab_16e6.txt.gz")
N_MERGES = 49152 - 256 - 2
START, END = "<|startoftext|>", "<|endoftext|>"
SPECIAL = (START, END)
CONTRACTIONS = ("'s", "'t", "'re", "'ve", "'m", "'ll", "'d")


def bytes_to_unicode():
    """Byte value -> printable unicode character, the GPT-2/CLIP reversible byte mapping.

    Insertion order (printable bytes first, then the rest) is the order of the first 256 ids.
    """
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    table = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def char_class(ch):
    """'L' for letters (\\p{L}), 'N' for numbers (\\p{N}), 'S' for whitespace, 'P' otherwise."""
    if ch.isspace():
        return "S"
    category = unicodedata.category(ch)[0]
    return category if category in "LN" else "P"


def pre_tokenize(text):
    """Split cleaned, lower-cased text like CLIP's regex: start/end markers, contractions,
    letter runs, single numbers, runs of other non-space characters (a pure-stdlib equivalent
    of its `regex` pattern with \\p{L} and \\p{N})."""
    words, i = [], 0
    while i < len(text):
        cls = char_class(text[i])
        fixed = next((c for c in SPECIAL + CONTRACTIONS if text.startswith(c, i)), None)
        if fixed:
            end = i + len(fixed)
        elif cls == "S":
            i += 1
            continue
        elif cls == "N":
            end = i + 1
        else:
            end = i + 1
            while end < len(text) and char_class(text[end]) == cls:
                end += 1
        words.append(text[i:end])
        i = end
    return words


def clean_text(text):
    """HF CLIPTokenizer's normalisation: ftfy.fix_text when installed (NFC otherwise),
    whitespace collapsed, lower case."""
    try:
        import ftfy

        text = ftfy.fix_text(text)
    except ImportError:
        text = unicodedata.normalize("NFC", text)
    return re.sub(r"\s+", " ", text).strip().lower()


class CLIPTokenizer:
    """`tokenizer(prompts)` -> list of 77-long id lists.

    placeholders: token string -> number of vectors; their ids are allotted from 49408 on,
    in the order given (the row order of the text encoder's `extra_embeddings`).
    """

    def __init__(self, vocab_path: Optional[str] = None, placeholders: Optional[Dict] = None,
                 max_length: int = 77):
        vocab_path = vocab_path or DEFAULT_VOCAB
        if not os.path.isfile(vocab_path):
            raise UserError(f"CLIP BPE vocabulary not found: {vocab_path}")
        with gzip.open(vocab_path, "rt", encoding="utf-8") as f:
            merges = [tuple(line.split()) for line in f.read().split("\n")[1 : N_MERGES + 1]]
        units = list(bytes_to_unicode().values())
        vocab = units + [u + "</w>" for u in units] + ["".join(m) for m in merges] + [START, END]
        self.encoder = {token: i for i, token in enumerate(vocab)}
        self.merge_rank = {pair: i for i, pair in enumerate(merges)}
        self.byte_encoder = bytes_to_unicode()
        self.start_id, self.end_id = self.encoder[START], self.encoder[END]
        self.max_length = max_length
        self.placeholder_ids = {}
        next_id = len(vocab)
        for token, n_vectors in (placeholders or {}).items():
            self.placeholder_ids[token] = list(range(next_id, next_id + n_vectors))
            next_id += n_vectors
        self.bpe = functools.lru_cache(maxsize=None)(self._bpe)

    @property
    def vocab_size(self):
        return len(self.encoder)

    def _bpe(self, word: str) -> List[str]:
        """Merge the characters of one pre-token, lowest-rank pair first."""
        parts = list(word[:-1]) + [word[-1] + "</w>"]
        while len(parts) > 1:
            ranked = [(self.merge_rank.get(p, N_MERGES), p) for p in zip(parts, parts[1:])]
            rank, (first, second) = min(ranked)
            if rank == N_MERGES:
                break
            merged, i = [], 0
            while i < len(parts):
                if i + 1 < len(parts) and parts[i] == first and parts[i + 1] == second:
                    merged.append(first + second)
                    i += 2
                else:
                    merged.append(parts[i])
                    i += 1
            parts = merged
        return parts

    def encode_text(self, text: str) -> List[int]:
        """BPE ids of plain text (no placeholders, no start/end)."""
        ids = []
        for word in pre_tokenize(clean_text(text)):
            units = "".join(self.byte_encoder[b] for b in word.encode("utf-8"))
            ids.extend(self.encoder[piece] for piece in self.bpe(units))
        return ids

    def encode(self, prompt: str) -> List[int]:
        """One prompt -> max_length ids: start, tokens, end, end-padding (truncated)."""
        ids = []
        for piece in self.split_placeholders(prompt):
            if piece in self.placeholder_ids:
                ids.extend(self.placeholder_ids[piece])
            else:
                ids.extend(self.encode_text(piece))
        ids = [self.start_id] + ids[: self.max_length - 2] + [self.end_id]
        return ids + [self.end_id] * (self.max_length - len(ids))

    def split_placeholders(self, prompt: str) -> List[str]:
        """Cut the prompt around placeholder strings (longest match first)."""
        if not self.placeholder_ids:
            return [prompt]
        alternatives = sorted(self.placeholder_ids, key=len, reverse=True)
        pattern = "(" + "|".join(re.escape(t) for t in alternatives) + ")"
        return [piece for piece in re.split(pattern, prompt) if piece]

    def __call__(self, prompts: Sequence[str]) -> List[List[int]]:
        return [self.encode(p) for p in prompts]
