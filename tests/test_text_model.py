"""Feedback model on a tiny random BERT: tokenizer round trip, training step, ONNX parity, serving with bad rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import torch
from hydra.utils import instantiate

from churnsense.feedback.labels import HEADS
from churnsense.feedback.tokenize import TextTokenizer
from helpers import feedback_config, serve_config, untrained_feedback_release


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


def test_training_step_export_parity_and_scoring(tiny_encoder, tmp_path):
    import pytorch_lightning as pl

    from churnsense.feedback import data as fdata
    from churnsense.feedback.module import FeedbackLitModule
    from churnsense.feedback.release import load_release
    from churnsense.feedback.score import score_feedback_batch
    from churnsense.feedback.train import build_net, training_frame, write_feedback_release

    cfg = feedback_config(tiny_encoder, tmp_path)
    tok = TextTokenizer.from_file(tiny_encoder / "tokenizer.json", 32)
    train = fdata.FeedbackDataset(training_frame(cfg.corpus, 0), tok)
    net = build_net(cfg.model)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    module = FeedbackLitModule(
        net,
        HEADS,
        optimizer=instantiate(cfg.model.optimizer),
        scheduler=instantiate(cfg.model.scheduler, num_training_steps=3),
        lr=1e-3,
        head_lr=1e-2,
    )
    trainer = pl.Trainer(
        accelerator="cpu",
        max_steps=3,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(module, train.loader(8, True))
    after = net.state_dict()
    assert not torch.equal(before["heads.sentiment.weight"], after["heads.sentiment.weight"])
    assert torch.equal(
        before["encoder.bert.encoder.layer.0.output.dense.weight"],
        after["encoder.bert.encoder.layer.0.output.dense.weight"],
    )  # frozen bottom layer
    dev = fdata.dev_set().groupby("language").head(3).reset_index(drop=True)
    (tmp_path / "rel").mkdir()
    result = write_feedback_release(tmp_path / "rel", net, cfg, dev, tok, {"val/macro_f1": 0.5})
    assert result["export/onnx_parity_max_abs"] < 1e-4
    release = load_release(tmp_path / "rel")
    df = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e", "f"],
            "text": ["Интернет пропадает", "", None, "bad \ufffd bytes", "האינטרנט נופל " * 20, "🙂🙂"],
        }
    )
    scored, rejects = score_feedback_batch(df, release, "text")
    assert len(scored) + len(rejects) == len(df) and list(scored["customer_id"]) == ["a", "e", "f"]
    assert set(rejects["reason"]) == {
        "empty text",
        "missing text",
        "undecodable text (replacement/surrogate characters)",
    }
    assert np.allclose(scored[["p_negative", "p_neutral", "p_positive"]].sum(1), 1, atol=1e-5)
    assert scored.attrs["truncated"] == 1 and scored["language"].iloc[2] == "other"


def test_serve_feedback_with_bad_rows(tiny_encoder, tmp_path):
    from churnsense.feedback.serve import serve_feedback

    untrained_feedback_release(tiny_encoder, tmp_path)
    src = tmp_path / "in.csv"
    src.write_text(
        "customer_id,text,channel\n1,Приложение вылетает,app\n2,,chat\n3,שלום תודה,mail\n4,  ,chat\n", encoding="utf-8"
    )
    serve = serve_config(
        "task=feedback",
        f"model={tmp_path / 'rel'}",
        f"input={src}",
        f"output={tmp_path / 'o.parquet'}",
        "chunk_size=2",
        "progress=false",
    )
    summary = serve_feedback(serve)
    out = pd.read_parquet(tmp_path / "o.parquet")
    rej = pd.read_csv(tmp_path / "o.rejects.csv")
    assert summary.balanced and summary.rows_in == 4 and len(out) == 2 and len(rej) == 2
    assert {"customer_id", "text", "channel", "sentiment", "p_negative", "topic", "language"} <= set(out.columns)
    assert sorted(rej["row"]) == [2, 4]


def test_feedback_drift_reference_and_serving_report(tiny_encoder, tmp_path, capsys):
    """The release's reference (its texts scored by itself) is written at training time; serving another sample of
    the same texts flags nothing, serving much longer texts flags their length."""
    from churnsense.core.drift import Profile
    from churnsense.feedback.data import synthetic_feedback
    from churnsense.feedback.serve import serve_feedback
    from churnsense.feedback.train import write_drift_reference

    cfg = feedback_config(tiny_encoder, tmp_path)
    cfg.seed = 0
    torch.manual_seed(0)  # the untrained heads: their predictions are part of the profile
    untrained_feedback_release(tiny_encoder, tmp_path, cfg)
    frame = pd.concat(
        [
            synthetic_feedback(400, 0).assign(source="feedback.parquet"),
            synthetic_feedback(50, 5).assign(source="synth"),
        ],
        ignore_index=True,
    )
    cfg.corpus.feedback_table = "data/demo/feedback.parquet"
    write_drift_reference(tmp_path / "rel", cfg, frame)
    ref = Profile.load(tmp_path / "rel" / "drift_reference.json")
    assert ref.meta["texts"] == ["feedback.parquet"] and ref.meta["rows"] == 400  # the customer feedback rows
    assert set(ref.features) == {"text_length", "language", "sentiment", "p_negative", "topic"}
    docs = {}
    for name, texts in (
        ("same", synthetic_feedback(400, 1)["text"]),
        ("longer", synthetic_feedback(400, 2)["text"].str.cat([" and also "] * 400).str.repeat(3)),
    ):
        src = tmp_path / f"{name}.csv"
        pd.DataFrame({"customer_id": range(400), "text": texts}).to_csv(src, index=False)
        serve = serve_config(
            "task=feedback",
            f"model={tmp_path / 'rel'}",
            f"input={src}",
            f"output={tmp_path / f'{name}.csv.out.parquet'}",
            "chunk_size=128",
            "progress=false",
            "drift.mlflow.enabled=false",
        )
        serve_feedback(serve)
        docs[name] = json.loads((tmp_path / f"{name}.csv.out.drift.json").read_text())
    out = capsys.readouterr().out
    assert docs["same"]["summary"]["drifted_features"] == [] and docs["same"]["summary"]["tested"] == 5
    assert docs["longer"]["summary"]["drifted_features"] == ["text_length"]
    assert next(line for line in out.splitlines() if line.startswith("DRIFT feedback")).count("text_length") == 1


def test_feedback_training_registers_a_champion_with_its_card(tiny_encoder, tmp_path, monkeypatch):
    """The whole `train.py task=feedback` path on the tiny encoder: release published, run tracked, version
    registered as `churnsense-feedback@champion` with the model card as description and its tags."""
    import mlflow

    from churnsense.feedback.train import train_feedback

    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    cfg = feedback_config(
        tiny_encoder,
        tmp_path,
        "logger=mlflow",
        f"logger.tracking_uri={uri}",
        "model.max_steps=2",
        "model.batch_size=8",
        "model.eval_batch_size=16",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "drift.feedback_reference_rows=16",
    )
    metrics = train_feedback(cfg)
    assert 0.0 <= metrics["val/macro_f1"] <= 1.0
    client = mlflow.MlflowClient(uri)
    version = client.get_model_version_by_alias("churnsense-feedback", "champion")
    assert version.tags["task"] == "feedback" and version.tags["serve_model"] == "model.onnx"
    assert version.description.startswith("# churnsense feedback model")
    assert "data" not in client.get_registered_model("churnsense-feedback").tags  # no empty tag
    assert (tmp_path / "rel" / "MODEL_CARD.md").is_file()
