"""Tokenisation shared by training, export and serving (`tokenizers` + numpy only: no torch, no transformers)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer


@dataclass
class Encoded:
    """Token ids per text (with <s> ... </s>), and whether the text was cut at `max_length`."""

    ids: list[list[int]]
    truncated: np.ndarray


class TextTokenizer:
    """e5 tokenisation: `prefix + text`, Unigram pieces, truncation to `max_length` tokens incl. specials."""

    def __init__(self, tokenizer: Tokenizer, max_length: int = 128, prefix: str = "query: ", pad_id: int = 1):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.prefix = prefix
        self.pad_id = int(pad_id)
        self.tokenizer.no_truncation()
        self.tokenizer.no_padding()

    @classmethod
    def from_file(cls, path: str | Path, max_length: int = 128, prefix: str = "query: ") -> TextTokenizer:
        tok = Tokenizer.from_file(str(path))
        pad = tok.token_to_id("<pad>")
        return cls(tok, max_length, prefix, 1 if pad is None else pad)

    def encode(self, texts: list[str]) -> Encoded:
        encs = self.tokenizer.encode_batch([self.prefix + t for t in texts])
        ids, cut = [], np.zeros(len(encs), dtype=bool)
        for i, enc in enumerate(encs):
            row = enc.ids
            if len(row) > self.max_length:
                row = row[: self.max_length - 1] + row[-1:]  # keep </s>
                cut[i] = True
            ids.append(row)
        return Encoded(ids, cut)

    def pad(self, ids: list[list[int]]) -> dict[str, np.ndarray]:
        """Right-pad to the longest row: `input_ids` int64 [B, T], `attention_mask` int64 [B, T]."""
        width = max((len(r) for r in ids), default=1)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for i, row in enumerate(ids):
            input_ids[i, : len(row)] = row
            mask[i, : len(row)] = 1
        return {"input_ids": input_ids, "attention_mask": mask}


def length_buckets(lengths: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Row indices grouped into batches of similar length (sorted by length, then cut into `batch_size`)."""
    order = np.argsort(lengths, kind="stable")
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
