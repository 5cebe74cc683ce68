"""Shared pytest setup: CPU only, quiet, deterministic; a tiny random text encoder for the feedback tests."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from churnsense.feedback.build_encoder import build_tokenizer

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("MLFLOW_ENABLE_ASYNC_LOGGING", "false")

TEXTS = [
    "The app crashes every time 😡",
    "Интернет пропадает каждый вечер",
    "Застосунок не працює, ґанок і їжак є",
    "האינטרנט נופל כל ערב",
    "query: hello world 👍",
    "ok",
]


@pytest.fixture(scope="session")
def tiny_encoder(tmp_path_factory):
    """A randomly initialised 2-layer BERT + a character-level Unigram tokenizer covering TEXTS."""
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out = tmp_path_factory.mktemp("tiny_encoder")
    chars = sorted({c for t in TEXTS + ["query: "] for c in t.replace(" ", "")})
    pieces = ["<s>", "<pad>", "</s>", "<unk>", "▁"] + chars + ["▁" + c for c in chars] + ["▁query", "▁ok"]
    scores = np.array([0, 0, 0, 0, -2] + [-5] * (2 * len(chars)) + [-3, -3], dtype=np.float32)
    tok = build_tokenizer(pieces, scores, {"bos": 0, "pad": 1, "eos": 2, "unk": 3}, {0x9: (0x20,), 0x1: ()})
    PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>"
    ).save_pretrained(out)
    torch.manual_seed(0)
    cfg = BertConfig(
        vocab_size=len(pieces),
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        pad_token_id=1,
    )
    BertModel(cfg, add_pooling_layer=False).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def tiny_texts() -> list[str]:
    """Texts the tiny encoder's tokenizer covers without <unk>: Latin, Cyrillic, Hebrew, emoji."""
    return list(TEXTS)


@pytest.fixture(scope="session")
def tiny_churn_release(tmp_path_factory):
    """One tiny churn release (untrained net, fitted pipeline and insights; `test_serving_churn.build_release`)
    shared by the serving tests of the whole session: read-only, built once."""
    from test_serving_churn import build_release

    return build_release(tmp_path_factory.mktemp("tiny-release"))
