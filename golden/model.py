"""The small byte-level language model, run with the accelerator's arithmetic.

Every linear layer is a pass on the array: the target model's through
`golden.arith.verify_gemm` with its FP16 weights, the draft model's through
`golden.arith.draft_gemm` with the SPEQ-16 encoding of the same weights.
Everything else (embeddings, LayerNorm, attention, GELU) is plain float32 and
the same in both models, and is computed row by row, so that a token's result
never depends on how many tokens share a call: a verify pass over T tokens
then gives each token exactly what a single-token pass gives it.

The architecture (``train/train_lm.py`` trains it): pre-LN transformer,
byte vocabulary, learned position embeddings, no biases in linear layers,
GELU (tanh form) MLP, an untied output head. Weights are stored as
``[out_features, in_features]`` FP16 in an ``.npz`` file with a JSON
``config``.
"""

import json
from pathlib import Path
import zipfile
import zlib

import numpy as np

from . import arith, speq16


__all__ = ["DEFAULT_WEIGHTS", "LINEAR_NAMES", "TinyLM", "Session"]


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
        self.enc = {key: speq16.encode(value) for key, value in data.items() if self.is_linear(key)}

    @staticmethod
    def is_linear(key):
        return key == "head" or key.rsplit(".", 1)[-1] in LINEAR_NAMES

    def linear_shapes(self):
        """(name, N, K) of every linear layer, in the order a token uses them."""
        names = [f"layer{i}.{n}" for i in range(self.layers) for n in LINEAR_NAMES] + ["head"]
        return [(name, *self.w[name].shape) for name in names]


class Session:
    """One model instance with its KV cache, running in one mode.

    ``verify`` (target: FP16 weights through `verify_gemm`), ``baseline``
    (the same arithmetic: plain FP16 weights) or ``draft`` (SPEQ-16 draft
    weights through `draft_gemm`). Every linear call is logged in `passes` as
    ``(mode, N, K, T)`` for the cycle model.
    """

    def __init__(self, model, mode):
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.model, self.mode = model, mode
        d = model.d
        self.k_cache = np.zeros((model.layers, model.context, d), dtype=np.float32)
        self.v_cache = np.zeros((model.layers, model.context, d), dtype=np.float32)
        self.length = 0
        self.passes = []

    def truncate(self, length):
        """Forget cache positions from ``length`` on."""
        if not 0 <= length <= self.length:
            raise ValueError(f"length must be between 0 and {self.length}, not {length}")
        self.length = length

    def _linear(self, x, name):
        model = self.model
        x16 = x.astype(np.float16)
        n, k = model.w[name].shape
        self.passes.append((self.mode, n, k, x.shape[0]))
        if self.mode == "draft":
            return arith.draft_gemm(x16, model.enc[name], model.F, model.lanes)
        return arith.verify_gemm(x16, model.w[name])

    def forward(self, tokens):
        """Logits (T x vocab, float32) after each of ``tokens``, appended to the cache.

        Raises
        ------
        ValueError
            If the tokens would pass the model's context, or are not bytes.
        """
        model, p = self.model, self.model.f32
        tokens = np.asarray(tokens, dtype=np.int64)
        t = len(tokens)
        if t == 0:
            return np.zeros((0, model.vocab), dtype=np.float32)
        if self.length + t > model.context:
            raise ValueError(f"{self.length} cached + {t} new tokens exceed the model's "
                             f"context of {model.context}")
        if tokens.min() < 0 or tokens.max() >= model.vocab:
            raise ValueError(f"tokens must be in 0..{model.vocab - 1}")
        start = self.length
        x = p["tok_emb"][tokens] + p["pos_emb"][start:start + t]
        heads, dh = model.heads, model.d // model.heads
        scale = np.float32(1.0 / np.sqrt(dh))
        for i in range(model.layers):
            pre = f"layer{i}."
            h = np.stack([_layer_norm(row, p[pre + "ln1.g"], p[pre + "ln1.b"]) for row in x])
            q = self._linear(h, pre + "wq")
            self.k_cache[i, start:start + t] = self._linear(h, pre + "wk")
            self.v_cache[i, start:start + t] = self._linear(h, pre + "wv")
            att = np.empty_like(q)
            for r in range(t):
                end = start + r + 1                       # causal: up to this token
                for hd in range(heads):
                    cols = slice(hd * dh, (hd + 1) * dh)
                    scores = self.k_cache[i, :end, cols] @ q[r, cols] * scale
                    e = np.exp(scores - scores.max())
                    att[r, cols] = (e / e.sum(dtype=np.float32)) @ self.v_cache[i, :end, cols]
            x = x + self._linear(att, pre + "wo")
            h = np.stack([_layer_norm(row, p[pre + "ln2.g"], p[pre + "ln2.b"]) for row in x])
            x = x + self._linear(_gelu(self._linear(h, pre + "w1")), pre + "w2")
        self.length += t
        h = np.stack([_layer_norm(row, p["lnf.g"], p["lnf.b"]) for row in x])
        return self._linear(h, "head")
