"""The small byte-level language model, run with the accelerator's arithmetic.

Every linear layer is a pass on the array: the target model's through
`golden.arith.verify_gemm` with its FP16 weights, the draft model's through
`golden.arith.draft_gemm` with the SPEQ-16 encoding of the same weights.

Attention is on the array too (docs/projection.md). The KV cache holds FP16
keys and values as the accelerator's memory does, in two byte planes (SPEC
section 2a); per layer and head, over the ``n`` cached keys (the new tokens'
included):

- ``Q K^T``: a pass whose weights are the cached keys (N = n, K = the head
  dimension) over the new tokens' queries (T = the new tokens);
- ``P V``: a pass whose weights are the cached values transposed (N = the
  head dimension, K = n padded with zeros to a multiple of 4) over the
  attention weights ``P`` in FP16, zero past each token's own position
  (causal) and in the padding.

Both are `verify_gemm` over the values as the session reads them, bit-exact
with the RTL's ``kv`` passes (both planes: the exact values) and
``kv_draft`` passes (the high plane: `speq16.kv_draft` of every value).

One cache (SPEC section 2a): the target session owns it; a draft session
built with ``target=`` reads the target's cached positions and keeps the
K/V of its own new tokens (the round's proposals) in a scratch of at most
gamma positions, which the speculative loop drops after the verify pass
(``golden.specdec``). With ``half`` it reads everything through the high
plane, and its scratch holds only that plane. A session without a target
keeps a cache of its own (FP16 decoding, and the earlier design in which the
draft kept a second cache). The softmax (with its scale
and causal mask), LayerNorm, GELU and the embeddings are float32 on the host,
the same in both models, and computed row by row over each token's own keys,
so that a token's result never depends on how many tokens share a call: a
verify pass over T tokens gives each token exactly what a single-token pass
gives it. (The zeros past a token's position add ``+-0`` products to an
accumulator that started at +0 and holds the token's own sum: exact.)

The architecture (``train/train_lm.py`` trains it): pre-LN transformer,
byte vocabulary, learned position embeddings, no biases in linear layers,
GELU (tanh form) MLP, an untied output head. Weights are stored as
``[out_features, in_features]`` FP16 in an ``.npz`` file with a JSON
``config``.
"""

import copy
import hashlib
import json
from pathlib import Path
import zipfile
import zlib

import numpy as np

from . import arith, speq16


__all__ = ["DEFAULT_WEIGHTS", "LINEAR_NAMES", "KV_DESIGNS", "TinyLM", "Session"]


DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "speqlm.npz"
#: The entries of the model file's JSON ``config`` that shape the model.
CONFIG_KEYS = ("d_model", "n_layers", "n_heads", "d_ff", "context", "vocab")
#: The linear layers of one transformer layer, in the order a token meets them.
LINEAR_NAMES = ("wq", "wk", "wv", "wo", "w1", "w2")
MODES = ("verify", "draft", "baseline")


def _layer_norm(x, g, b):
    mean = x.mean(dtype=np.float32)
    var = ((x - mean) ** 2).mean(dtype=np.float32)
    return (x - mean) / np.sqrt(var + np.float32(1e-5)) * g + b


def _gelu(x):
    c = np.float32(np.sqrt(2.0 / np.pi))
    return np.float32(0.5) * x * (np.float32(1) + np.tanh(c * (x + np.float32(0.044715) * x ** 3)))


def _read_npz(path):
    """``{name: array}`` of the ``.npz`` file ``path``.

    Raises
    ------
    OSError
        If the file is missing, a directory or unreadable.
    ValueError
        If it is not an ``.npz`` archive, or a damaged one.
    """
    # np.load takes any file (an .npy array; anything else it calls pickled
    # data): only a zip archive is an .npz file.
    with open(path, "rb") as f:
        if f.read(4) not in (b"PK\x03\x04", b"PK\x05\x06"):
            raise ValueError(f"{path}: not an .npz file (not a zip archive)")
    try:
        with np.load(path) as archive:
            return {key: archive[key] for key in archive.files}
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise ValueError(f"{path}: a damaged or unreadable .npz file ({error})") from None


#: `speq16.encode` and `speq16.draft` of the weight matrices this process has
#: encoded, by content: the encoding takes most of a `TinyLM`'s loading time,
#: and a process loads the same weights again (another ``draft_lanes`` or
#: ``draft_frac_bits``, which the encoding does not depend on).
_ENCODED = {}


def _encoded(w):
    """``(speq16.encode(w), speq16.draft(of it))`` of FP16 matrix ``w``, copies
    of the ones computed the first time ``w``'s content was seen."""
    key = (w.shape, w.dtype.str, hashlib.sha256(np.ascontiguousarray(w).tobytes()).digest())
    if key not in _ENCODED:
        enc = speq16.encode(w)
        _ENCODED[key] = enc, speq16.draft(enc)
    return copy.deepcopy(_ENCODED[key])


class TinyLM:
    """The model's weights, FP16 and SPEQ-16 encoded.

    Parameters
    ----------
    path : str or Path
        The ``.npz`` file (default: ``models/speqlm.npz``).
    draft_frac_bits : int, optional
        ``F`` of the draft passes (default: the default configuration's,
        `hw.config.SpeqConfig`).
    draft_lanes : {1, 2, 4}, optional
        ``L`` of the draft passes (default: the default configuration's).

    Raises
    ------
    OSError
        A missing file (`FileNotFoundError`), a directory, an unreadable file.
    ValueError
        A file that is not an ``.npz`` archive, or one without the expected
        configuration, keys and shapes.
    """

    def __init__(self, path=DEFAULT_WEIGHTS, draft_frac_bits=None, draft_lanes=None):
        from hw.config import SpeqConfig       # the parameters only: no hardware
        default = SpeqConfig()
        self.F = default.draft_frac_bits if draft_frac_bits is None else draft_frac_bits
        self.lanes = default.draft_lanes if draft_lanes is None else draft_lanes
        arith.check_lanes(self.lanes)
        path = Path(path)
        data = _read_npz(path)
        if "config" not in data:
            raise ValueError(f"{path}: no 'config' entry")
        try:
            self.config = json.loads(str(data.pop("config")))
        except ValueError as error:
            raise ValueError(f"{path}: its 'config' entry is not JSON ({error})") from None
        c = self.config
        if not isinstance(c, dict):
            raise ValueError(f"{path}: its 'config' entry is not a JSON object")
        for key in CONFIG_KEYS:
            if not (isinstance(c.get(key), int) and c[key] > 0):
                raise ValueError(f"{path}: its 'config' needs {key!r}, a positive integer, "
                                 f"not {c.get(key)!r}")
        self.d, self.layers, self.heads = c["d_model"], c["n_layers"], c["n_heads"]
        self.context, self.vocab = c["context"], c["vocab"]
        shapes = {"tok_emb": (self.vocab, self.d), "pos_emb": (self.context, self.d),
                  "lnf.g": (self.d,), "lnf.b": (self.d,), "head": (self.vocab, self.d)}
        for i in range(self.layers):
            for name in ("wq", "wk", "wv", "wo"):
                shapes[f"layer{i}.{name}"] = (self.d, self.d)
            shapes[f"layer{i}.w1"] = (c["d_ff"], self.d)
            shapes[f"layer{i}.w2"] = (self.d, c["d_ff"])
            for ln in ("ln1", "ln2"):
                shapes[f"layer{i}.{ln}.g"] = shapes[f"layer{i}.{ln}.b"] = (self.d,)
        for key, shape in shapes.items():
            if key not in data or data[key].shape != shape or data[key].dtype != np.float16:
                got = (data[key].shape, data[key].dtype) if key in data else "missing"
                raise ValueError(f"{path}: {key} must be float16 {shape}, got {got}")
        self.w = data
        # Norms and embeddings run in float32; linear weights stay FP16.
        self.f32 = {key: value.astype(np.float32) for key, value in data.items()
                    if not self.is_linear(key)}
        self.enc, self.draft_weights = {}, {}
        for key, value in data.items():
            if self.is_linear(key):
                self.enc[key], self.draft_weights[key] = _encoded(value)

    @staticmethod
    def is_linear(key):
        return key == "head" or key.rsplit(".", 1)[-1] in LINEAR_NAMES

    def linear_shapes(self):
        """(name, N, K) of every linear layer, in the order a token uses them."""
        names = [f"layer{i}.{n}" for i in range(self.layers) for n in LINEAR_NAMES] + ["head"]
        return [(name, *self.w[name].shape) for name in names]


#: How the draft model gets its keys and values (issue 19, SPEC section 2a):
#: ``half`` (default): one cache, the target's, which the draft reads through
#: its high byte plane (`speq16.kv_draft`), with a scratch of its own for the
#: round's proposals; ``shared``: the same at full width (for comparison);
#: ``own``: the draft keeps a full FP16 cache of its own (the earlier design).
KV_DESIGNS = ("half", "shared", "own")


class Session:
    """One model instance and its view of the KV cache, running in one mode.

    ``verify`` (target: FP16 weights through `verify_gemm`), ``baseline``
    (the same arithmetic: plain FP16 weights) or ``draft`` (SPEQ-16 draft
    weights through `draft_gemm`) for the linear layers. Attention runs on
    the array over the cached keys and values (module docstring).

    A session has a cache of its own (``k_cache``, ``v_cache``: every layer's
    FP16 keys and values, ``context`` positions) unless it is a draft that
    shares a target's (``target``, SPEC section 2a): then it reads the
    target's cached positions (``0 .. target.length - 1``) and keeps the K/V
    of its own new tokens in a ``scratch`` of at most ``scratch`` positions,
    dropped by `drop_scratch` after the round's verify pass. With ``half``
    every value it reads, cached or scratch, is `speq16.kv_draft` of the
    stored value: the draft reads the high byte plane only (its scratch then
    holds only that plane, uint8).

    Every pass is logged in `passes` as ``(mode, N, K, T)`` for the cycle
    model: the linear layers in the session's mode; attention as ``kv``
    passes (the cache's two byte planes: the exact values) or, at half width,
    ``kv_draft`` passes (the high plane). Every layer's cache write is logged
    as ``("kv_write", values per token, bits per value, T)``.

    Parameters
    ----------
    model : TinyLM
    mode : {"verify", "draft", "baseline"}
    target : Session, optional
        The target session whose cache a draft session reads.
    half : bool
        Read the shared cache at half width (only with ``target``).
    scratch : int
        Positions of the draft's scratch (only with ``target``; at least 1).

    Members
    -------
    trace : list or None
        When a list, every attention pass appends ``(layer, head, kind, x,
        w, y)``: ``kind`` "qk" or "pv", the pass' FP16 activations ``x`` (T x
        K) and the weights as the pass reads them ``w`` (N x K), and its
        float32 result ``y`` (T x N).

    Raises
    ------
    ValueError
        For an unknown mode, a ``target`` for a session that is not a draft
        or that itself shares a cache, ``half`` or ``scratch`` without a
        target, or a scratch below 1 position.
    """

    def __init__(self, model, mode, *, target=None, half=False, scratch=0):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.model, self.mode = model, mode
        self.target, self.half = target, bool(half)
        d = model.d
        if target is None:
            if half or scratch:
                raise ValueError("half and scratch need a target whose cache the draft shares")
            self.k_cache = np.zeros((model.layers, model.context, d), dtype=np.float16)
            self.v_cache = np.zeros((model.layers, model.context, d), dtype=np.float16)
        else:
            if mode != "draft":
                raise ValueError(f"only a draft session shares a target's cache, not a "
                                 f"{mode} session")
            if target.target is not None or target.model is not model:
                raise ValueError("the target must be a session of the same model with a "
                                 "cache of its own")
            if scratch < 1:
                raise ValueError(f"scratch must be at least 1 position, not {scratch}")
            self.k_cache = self.v_cache = None
            dtype = np.uint8 if self.half else np.float16
            self.k_scratch = np.zeros((model.layers, scratch, d), dtype=dtype)
            self.v_scratch = np.zeros((model.layers, scratch, d), dtype=dtype)
        self._length = 0           # own cache: positions held; shared: scratch positions
        self.passes = []
        self.trace = None

    @property
    def length(self):
        """Positions this session attends to before its next token."""
        if self.target is None:
            return self._length
        return self.target.length + self._length

    @property
    def kv_bytes(self):
        """Bytes of the KV memory this session holds (its arrays): its own cache,
        or its scratch (a shared cache is the target's)."""
        if self.target is None:
            return self.k_cache.nbytes + self.v_cache.nbytes
        return self.k_scratch.nbytes + self.v_scratch.nbytes

    def truncate(self, length):
        """Forget cache positions from ``length`` on (a session with a cache of
        its own)."""
        if self.target is not None:
            raise ValueError("a draft sharing the target's cache drops its scratch "
                             "(drop_scratch) instead")
        if not 0 <= length <= self._length:
            raise ValueError(f"length must be between 0 and {self._length}, not {length}")
        self._length = length

    def drop_scratch(self):
        """Forget the scratch (after the round's verify pass)."""
        if self.target is None:
            raise ValueError("only a draft sharing the target's cache has a scratch")
        self._length = 0

    def _linear(self, x, name):
        model = self.model
        x16 = x.astype(np.float16)
        n, k = model.w[name].shape
        self.passes.append((self.mode, n, k, x.shape[0]))
        if self.mode == "draft":
            return arith.draft_gemm(x16, model.enc[name], model.F, model.lanes,
                                    draft_weights=model.draft_weights[name])
        return arith.verify_gemm(x16, model.w[name])

    @property
    def attention_mode(self):
        """The pass mode of this session's attention passes: the cache is held
        in two byte planes (SPEC section 2a), read whole (``kv``) or, by a
        half-width draft, the high plane alone (``kv_draft``)."""
        return "kv_draft" if self.half else "kv"

    def _attention_pass(self, layer, head, kind, x16, w16):
        self.passes.append((self.attention_mode, *w16.shape, x16.shape[0]))
        y = arith.verify_gemm(x16, w16)
        if self.trace is not None:
            self.trace.append((layer, head, kind, x16, w16.copy(), y))   # w16 may view the cache
        return y

    def _write(self, layer, start, k16, v16):
        """Store the new tokens' keys and values (FP16, T x d) from position ``start``."""
        t = k16.shape[0]
        if self.target is None:
            self.k_cache[layer, start:start + t] = k16
            self.v_cache[layer, start:start + t] = v16
            self.passes.append(("kv_write", 2 * self.model.d, 16, t))
            return
        at = start - self.target.length
        if self.half:
            # The draft reads the high plane only, so only it is written.
            k16, v16 = speq16.kv_planes(k16)[0], speq16.kv_planes(v16)[0]
        self.k_scratch[layer, at:at + t] = k16
        self.v_scratch[layer, at:at + t] = v16
        self.passes.append(("kv_write", 2 * self.model.d, 8 if self.half else 16, t))

    def _read(self, layer, n, which):
        """Keys (``which`` "k") or values ("v") of positions ``0 .. n - 1`` of
        ``layer``, FP16 (n x d), as this session's attention reads them."""
        if self.target is None:
            return (self.k_cache if which == "k" else self.v_cache)[layer, :n]
        cached = self.target.length
        cache = self.target.k_cache if which == "k" else self.target.v_cache
        scratch = self.k_scratch if which == "k" else self.v_scratch
        if self.half:
            return np.concatenate([speq16.kv_draft(cache[layer, :cached]),
                                   speq16.kv_draft_high(scratch[layer, :n - cached])])
        return np.concatenate([cache[layer, :cached], scratch[layer, :n - cached]])

    def _attention(self, layer, q, start):
        """Attention of the ``T`` new tokens (queries ``q``, float32 T x d)
        over the first ``start + T`` positions (module docstring)."""
        model = self.model
        t = q.shape[0]
        n = start + t
        padded = -(-n // 4) * 4
        dh = model.d // model.heads
        scale = np.float32(1.0 / np.sqrt(dh))
        q16 = q.astype(np.float16)
        all_keys, all_values = self._read(layer, n, "k"), self._read(layer, n, "v")
        att = np.empty((t, model.d), dtype=np.float32)
        for hd in range(model.heads):
            cols = slice(hd * dh, (hd + 1) * dh)
            keys = all_keys[:, cols]
            scores = self._attention_pass(layer, hd, "qk", q16[:, cols], keys)
            p16 = np.zeros((t, padded), dtype=np.float16)
            for r in range(t):
                own = scores[r, :start + r + 1] * scale          # causal: up to this token
                e = np.exp(own - own.max())
                p16[r, :start + r + 1] = e / e.sum(dtype=np.float32)
            values = np.zeros((dh, padded), dtype=np.float16)
            values[:, :n] = all_values[:, cols].T
            att[:, cols] = self._attention_pass(layer, hd, "pv", p16, values)
        return att

    def forward(self, tokens):
        """Logits (T x vocab, float32) after each of ``tokens``, appended to the
        cache (or the scratch).

        Raises
        ------
        ValueError
            If the tokens would pass the model's context or the scratch, or
            are not bytes.
        """
        model, p = self.model, self.model.f32
        tokens = np.asarray(tokens, dtype=np.int64)
        t = len(tokens)
        if t == 0:
            return np.zeros((0, model.vocab), dtype=np.float32)
        if self.length + t > model.context:
            raise ValueError(f"{self.length} cached + {t} new tokens exceed the model's "
                             f"context of {model.context}")
        if self.target is not None and self._length + t > self.k_scratch.shape[1]:
            raise ValueError(f"{self._length} + {t} new tokens exceed the draft's scratch of "
                             f"{self.k_scratch.shape[1]} positions")
        if tokens.min() < 0 or tokens.max() >= model.vocab:
            raise ValueError(f"tokens must be in 0..{model.vocab - 1}")
        start = self.length
        x = p["tok_emb"][tokens] + p["pos_emb"][start:start + t]
        for i in range(model.layers):
            pre = f"layer{i}."
            h = np.stack([_layer_norm(row, p[pre + "ln1.g"], p[pre + "ln1.b"]) for row in x])
            q = self._linear(h, pre + "wq")
            # The cache holds the results in FP16, as the memory would.
            self._write(i, start, self._linear(h, pre + "wk").astype(np.float16),
                        self._linear(h, pre + "wv").astype(np.float16))
            x = x + self._linear(self._attention(i, q, start), pre + "wo")
            h = np.stack([_layer_norm(row, p[pre + "ln2.g"], p[pre + "ln2.b"]) for row in x])
            x = x + self._linear(_gelu(self._linear(h, pre + "w1")), pre + "w2")
        self._length += t
        h = np.stack([_layer_norm(row, p["lnf.g"], p["lnf.b"]) for row in x])
        return self._linear(h, "head")
