"""Feedback model on a tiny random BERT: tokenizer round trip, training step, ONNX parity, serving with bad rows."""
from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from omegaconf import OmegaConf

from churnsense.text.labels import HEADS
from churnsense.text.tokenize import TextTokenizer


def test_tokenizer_round_trip_cyrillic_hebrew_emoji(tiny_encoder, tiny_texts):
    tok = TextTokenizer.from_file(tiny_encoder / "tokenizer.json", max_length=64, prefix="")
    for text in tiny_texts:
        ids = tok.encode([text]).ids[0]
        assert ids[0] == 0 and ids[-1] == 2 and 3 not in ids
        assert tok.tokenizer.decode(ids, skip_special_tokens=True) == text
    assert tok.tokenizer.normalizer.normalize_str("a\tb\x01c   d") == "a bc d"


def test_truncation_is_counted(tiny_encoder, tiny_texts):
    tok = TextTokenizer.from_file(tiny_encoder / "tokenizer.json", max_length=8)
    enc = tok.encode(["ok", tiny_texts[1]])
    assert enc.truncated.tolist() == [False, True] and len(enc.ids[1]) == 8 and enc.ids[1][-1] == 2


def _feedback_cfg(tiny_encoder, tmp_path):
    demo = OmegaConf.load("conf/feedback/demo.yaml")
    cfg = OmegaConf.create({"paths": {"cache_dir": ".cache", "artifacts_dir": str(tmp_path), "data_dir": "none"},
                            "feedback": demo})
    fc = cfg.feedback
    fc.encoder_path, fc.release_dir, fc.max_length, fc.trainable_layers = str(tiny_encoder), str(tmp_path / "rel"), 32, 1
    fc.data.n_synth, fc.data.drugreview_rows, fc.data.feedback_table = 64, 0, None
    return cfg


def test_training_step_export_parity_and_scoring(tiny_encoder, tmp_path):
    import pytorch_lightning as pl

    from churnsense.text import data as fdata
    from churnsense.text.lit_module import FeedbackLitModule
    from churnsense.text.release import load_release, score_feedback_batch
    from churnsense.text.training import build_net, training_frame, write_release

    cfg = _feedback_cfg(tiny_encoder, tmp_path)
    fc = cfg.feedback
    tok = TextTokenizer.from_file(tiny_encoder / "tokenizer.json", 32)
    train = fdata.FeedbackDataset(training_frame(fc, 0), tok)
    net = build_net(fc)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    module = FeedbackLitModule(net, HEADS, lr=1e-3, head_lr=1e-2, max_steps=3)
    trainer = pl.Trainer(accelerator="cpu", max_steps=3, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(module, train.loader(8, True))
    after = net.state_dict()
    assert not torch.equal(before["heads.sentiment.weight"], after["heads.sentiment.weight"])
    assert torch.equal(before["encoder.bert.encoder.layer.0.output.dense.weight"],
                       after["encoder.bert.encoder.layer.0.output.dense.weight"])  # frozen bottom layer
    dev = fdata.dev_set().groupby("language").head(3).reset_index(drop=True)
    fc.export.int8 = False
    result = write_release(net, fc, cfg, tmp_path / "rel", dev, tok, {"val/macro_f1": 0.5})
    assert result["export/onnx_parity_max_abs"] < 1e-4
    release = load_release(tmp_path / "rel")
    df = pd.DataFrame({"customer_id": ["a", "b", "c", "d", "e", "f"],
                       "text": ["Интернет пропадает", "", None, "bad \ufffd bytes", "האינטרנט נופל " * 20, "🙂🙂"]})
    scored, rejects = score_feedback_batch(df, release, "text")
    assert len(scored) + len(rejects) == len(df) and list(scored["customer_id"]) == ["a", "e", "f"]
    assert set(rejects["reason"]) == {"empty text", "missing text",
                                      "undecodable text (replacement/surrogate characters)"}
    assert np.allclose(scored[["p_negative", "p_neutral", "p_positive"]].sum(1), 1, atol=1e-5)
    assert scored.attrs["truncated"] == 1 and scored["language"].iloc[2] == "other"


def test_serve_feedback_with_bad_rows(tiny_encoder, tmp_path):
    from churnsense.text.serving import serve_feedback
    from churnsense.text.training import build_net, write_release

    cfg = _feedback_cfg(tiny_encoder, tmp_path)
    cfg.feedback.export.int8 = False
    from churnsense.text.data import dev_set

    write_release(build_net(cfg.feedback).eval(), cfg.feedback, cfg, tmp_path / "rel",
                  dev_set().head(4), TextTokenizer.from_file(tiny_encoder / "tokenizer.json", 32), {})
    src = tmp_path / "in.csv"
    src.write_text("customer_id,text,channel\n1,Приложение вылетает,app\n2,,chat\n3,שלום תודה,mail\n4,  ,chat\n",
                   encoding="utf-8")
    serve = OmegaConf.create({"model": str(tmp_path / "rel"), "input": str(src), "output": str(tmp_path / "o.parquet"),
                              "text_column": "text", "rejects": None, "chunk_size": 2, "progress": False})
    summary = serve_feedback(serve)
    out = pd.read_parquet(tmp_path / "o.parquet")
    rej = pd.read_csv(tmp_path / "o.rejects.csv")
    assert summary.balanced and summary.rows_in == 4 and len(out) == 2 and len(rej) == 2
    assert {"customer_id", "text", "channel", "sentiment", "p_negative", "topic", "language"} <= set(out.columns)
    assert sorted(rej["row"]) == [2, 4]
