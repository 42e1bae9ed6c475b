"""Train the small byte-level language model of ``models/speqlm.npz``.

The corpus is the Python standard library's own source, which every machine
with Python has offline: the ``.py`` files directly in
``sysconfig.get_paths()["stdlib"]`` (top level only: no subpackages, so not
``test/`` either), in sorted file-name order, read as bytes and joined with
``b"\\n"``. The last 5 % of the bytes are the validation split.

The model (``golden/model.py`` runs it in NumPy, so names and semantics are
fixed): byte vocabulary (256), d_model 128, 4 pre-LN layers of 4-head causal
self-attention (head dim 32) and a GELU (tanh form) MLP of width 512,
learned position embeddings for a context of 256, final LayerNorm and an
untied output head. Linear weights are ``[out_features, in_features]`` and no
linear layer has a bias. Training is float32 AdamW (optax) with linear warmup
and cosine decay on random 256-byte windows; the result is written with every
parameter rounded to FP16, plus a JSON ``config``.

Seeds are fixed (numpy for the batches, a JAX PRNGKey for the init), so a
rerun with the same options, Python (the corpus) and JAX versions gives the
same model.

    python train/train_lm.py --out models/speqlm.npz [--steps N] [--seed S]
"""

import argparse
import hashlib
import io
import json
import math
import os
from pathlib import Path
import sys
import sysconfig
import time

import numpy as np

VOCAB = 256
D_MODEL = 128
N_LAYERS = 4
N_HEADS = 4
D_FF = 512
CONTEXT = 256
LN_EPS = 1e-5
VALID_FRACTION = 0.05
DEFAULT_STEPS = 2200


def corpus():
    """(bytes, file count) of the training corpus (see the module docstring)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted((p for p in stdlib.glob("*.py") if p.is_file()), key=lambda p: p.name)
    if not files:
        raise SystemExit(f"no .py files in {stdlib}")
    return b"\n".join(p.read_bytes() for p in files), len(files)


def param_shapes():
    """Parameter name -> shape, with the names of the ``.npz`` file."""
    shapes = {"tok_emb": (VOCAB, D_MODEL), "pos_emb": (CONTEXT, D_MODEL)}
    for i in range(N_LAYERS):
        p = f"layer{i}."
        shapes[p + "ln1.g"] = shapes[p + "ln1.b"] = (D_MODEL,)
        for name in ("wq", "wk", "wv", "wo"):
            shapes[p + name] = (D_MODEL, D_MODEL)
        shapes[p + "ln2.g"] = shapes[p + "ln2.b"] = (D_MODEL,)
        shapes[p + "w1"] = (D_FF, D_MODEL)
        shapes[p + "w2"] = (D_MODEL, D_FF)
    shapes["lnf.g"] = shapes["lnf.b"] = (D_MODEL,)
    shapes["head"] = (VOCAB, D_MODEL)
    return shapes


def init_params(key):
    """Normal(0, 0.02) matrices and embeddings, LayerNorm g = 1 and b = 0."""
    import jax
    import jax.numpy as jnp

    shapes = param_shapes()
    keys = jax.random.split(key, len(shapes))
    params = {}
    for k, (name, shape) in zip(keys, shapes.items()):
        if name.endswith(".g"):
            params[name] = jnp.ones(shape, jnp.float32)
        elif name.endswith(".b"):
            params[name] = jnp.zeros(shape, jnp.float32)
        else:
            params[name] = 0.02 * jax.random.normal(k, shape, jnp.float32)
    return params


def forward(params, tokens):
    """Logits [B, T, 256] (float32) of the byte windows ``tokens`` [B, T]."""
    import jax
    import jax.numpy as jnp

    def layer_norm(x, g, b):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / jnp.sqrt(var + LN_EPS) * g + b

    def gelu(x):
        return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    B, T = tokens.shape
    hd = D_MODEL // N_HEADS
    x = params["tok_emb"][tokens] + params["pos_emb"][:T]
    causal = jnp.tril(jnp.ones((T, T), bool))
    for i in range(N_LAYERS):
        p = lambda name: params[f"layer{i}.{name}"]
        h = layer_norm(x, p("ln1.g"), p("ln1.b"))
        # Heads: [B, T, d_model] -> [B, heads, T, head dim] (head j = features 32j..32j+31).
        q = (h @ p("wq").T).reshape(B, T, N_HEADS, hd).transpose(0, 2, 1, 3)
        k = (h @ p("wk").T).reshape(B, T, N_HEADS, hd).transpose(0, 2, 1, 3)
        v = (h @ p("wv").T).reshape(B, T, N_HEADS, hd).transpose(0, 2, 1, 3)
        s = (q @ k.transpose(0, 1, 3, 2)) / math.sqrt(hd)
        s = jnp.where(causal, s, -jnp.inf)
        a = jax.nn.softmax(s, axis=-1)
        attn = (a @ v).transpose(0, 2, 1, 3).reshape(B, T, D_MODEL)
        x = x + attn @ p("wo").T
        h = layer_norm(x, p("ln2.g"), p("ln2.b"))
        x = x + gelu(h @ p("w1").T) @ p("w2").T
    h = layer_norm(x, params["lnf.g"], params["lnf.b"])
    return h @ params["head"].T


def loss_fn(params, batch):
    """Mean cross-entropy (nats per byte) of predicting batch[:, 1:] from batch[:, :-1]."""
    import jax
    import jax.numpy as jnp

    logits = forward(params, batch[:, :-1])
    logp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(logp, batch[:, 1:, None], axis=-1)[..., 0]
    return nll.mean()


def to_fp16(params):
    """Every parameter as a float16 NumPy array; fails loudly on a non-finite value."""
    out = {}
    for name, value in params.items():
        value = np.asarray(value, dtype=np.float32)
        if not np.all(np.isfinite(value)):
            raise SystemExit(f"error: {name} has non-finite float32 values")
        half = value.astype(np.float16)
        if not np.all(np.isfinite(half)):
            raise SystemExit(f"error: {name} overflows FP16 (max |w| = {np.abs(value).max():g})")
        out[name] = half
    return out


def main(argv=None):
    p = argparse.ArgumentParser(
        description="Train the byte-level transformer LM (d_model 128, 4 layers, 4 heads, "
                    "d_ff 512, context 256) on the Python standard library's top-level "
                    "modules and write its FP16 weights.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", default="models/speqlm.npz",
                   help="output .npz file: FP16 parameters and a JSON 'config' entry")
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help="number of optimizer steps (the cosine schedule spans them all); "
                        f"the default ({DEFAULT_STEPS}, about 0.67 s each at the default batch) "
                        "takes about 25 minutes on 2 idle CPU cores")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the JAX init PRNGKey and of the NumPy batch sampler")
    p.add_argument("--batch", type=int, default=16,
                   help="windows of 256 (+1 target) bytes per step, drawn at random "
                        "positions of the training split")
    p.add_argument("--lr", type=float, default=1e-3,
                   help="peak learning rate of AdamW (cosine decay to 10%% of it)")
    p.add_argument("--warmup", type=int, default=100,
                   help="linear warmup steps (capped at a tenth of --steps)")
    p.add_argument("--weight-decay", type=float, default=0.1,
                   help="AdamW weight decay of the linear weight matrices (not of "
                        "embeddings or LayerNorm parameters)")
    p.add_argument("--log-every", type=int, default=50,
                   help="print step, mean train loss since the last print and elapsed time "
                        "every this many steps")
    p.add_argument("--eval-every", type=int, default=250,
                   help="evaluate the validation loss every this many steps (and at the end)")
    p.add_argument("--val-windows", type=int, default=128,
                   help="fixed validation windows (evenly spaced over the validation split)")
    args = p.parse_args(argv)
    for name in ("steps", "batch", "log_every", "eval_every", "val_windows"):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.warmup < 0 or args.lr <= 0 or args.weight_decay < 0:
        p.error("--warmup, --weight-decay must be >= 0 and --lr > 0")

    import jax
    import jax.numpy as jnp
    import optax

    t0 = time.time()
    data, n_files = corpus()
    sha = hashlib.sha256(data).hexdigest()
    pyver = sys.version.split()[0]
    split = int(len(data) * (1 - VALID_FRACTION))
    train = np.frombuffer(data[:split], dtype=np.uint8).astype(np.int32)
    valid = np.frombuffer(data[split:], dtype=np.uint8).astype(np.int32)
    print(f"python {pyver}, jax {jax.__version__}, optax {optax.__version__}, "
          f"devices {jax.devices()}")
    print(f"corpus: {n_files} files, {len(data):,} bytes, sha256 {sha}; "
          f"train {len(train):,} bytes, validation {len(valid):,} bytes")

    win = CONTEXT + 1
    if len(valid) < win or len(train) < win:
        raise SystemExit("corpus too small")
    vstarts = np.linspace(0, len(valid) - win, args.val_windows).round().astype(np.int64)
    val_batch = np.stack([valid[s:s + win] for s in vstarts])

    params = init_params(jax.random.PRNGKey(args.seed))
    n_params = sum(int(v.size) for v in params.values())
    print(f"model: {n_params:,} parameters; batch {args.batch} x {CONTEXT} bytes, "
          f"{args.steps} steps, peak lr {args.lr:g}, seed {args.seed}")

    warmup = min(args.warmup, args.steps // 10)
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0, peak_value=args.lr, warmup_steps=warmup,
        decay_steps=args.steps, end_value=args.lr * 0.1)
    decay_mask = {name: (v.ndim == 2 and "emb" not in name) for name, v in params.items()}
    opt = optax.chain(
        optax.clip_by_global_norm(1.0),
        optax.adamw(schedule, b1=0.9, b2=0.99, weight_decay=args.weight_decay,
                    mask=decay_mask))
    opt_state = opt.init(params)

    @jax.jit
    def train_step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    eval_loss_jit = jax.jit(loss_fn)

    def evaluate(params):
        # Mean over windows of equal length = mean over all predicted bytes.
        chunk = 32
        total = 0.0
        for s in range(0, len(val_batch), chunk):
            b = val_batch[s:s + chunk]
            total += float(eval_loss_jit(params, jnp.asarray(b))) * len(b)
        return total / len(val_batch)

    rng = np.random.default_rng(args.seed)
    offsets = np.arange(win)
    t_train = time.time()
    running, count = 0.0, 0
    train_loss = float("nan")
    val_loss = float("nan")
    for step in range(1, args.steps + 1):
        starts = rng.integers(0, len(train) - win + 1, size=args.batch)
        batch = jnp.asarray(train[starts[:, None] + offsets])
        params, opt_state, loss = train_step(params, opt_state, batch)
        running += float(loss)
        count += 1
        if step % args.log_every == 0 or step == args.steps:
            train_loss = running / count
            el = time.time() - t_train
            print(f"step {step:5d}  train loss {train_loss:.4f}  lr {float(schedule(step)):.2e}  "
                  f"elapsed {el:7.1f} s  ({el / step:.3f} s/step)", flush=True)
            if not math.isfinite(train_loss):
                raise SystemExit("error: the training loss is not finite")
            running, count = 0.0, 0
        if step % args.eval_every == 0 or step == args.steps:
            val_loss = evaluate(params)
            print(f"step {step:5d}  validation loss {val_loss:.4f} nats/byte "
                  f"({val_loss / math.log(2):.4f} bits/byte)", flush=True)

    train_time = time.time() - t_train
    half = to_fp16(params)
    val_loss_fp16 = evaluate({k: jnp.asarray(v.astype(np.float32)) for k, v in half.items()})
    print(f"final: train loss {train_loss:.4f}, validation loss {val_loss:.4f} (float32 weights), "
          f"{val_loss_fp16:.4f} (FP16 weights) nats/byte; training {train_time:.0f} s")

    config = {
        "d_model": D_MODEL, "n_layers": N_LAYERS, "n_heads": N_HEADS, "d_ff": D_FF,
        "context": CONTEXT, "vocab": VOCAB,
        "steps": args.steps, "seed": args.seed, "batch": args.batch, "lr": args.lr,
        "warmup": warmup, "weight_decay": args.weight_decay,
        "python": pyver, "jax": jax.__version__, "optax": optax.__version__,
        "corpus": "top-level *.py of the Python stdlib, sorted by name, joined with b'\\n'",
        "corpus_files": n_files, "corpus_bytes": len(data), "corpus_sha256": sha,
        "valid_bytes": len(valid), "val_windows": args.val_windows,
        "train_loss": round(train_loss, 6),
        "val_loss": round(val_loss, 6),
        "val_loss_fp16": round(val_loss_fp16, 6),
        "train_seconds": round(train_time, 1),
        "recipe": "train/train_lm.py",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, config=np.array(json.dumps(config)), **half)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(buf.getvalue())
    os.replace(tmp, out)
    print(f"wrote {out} ({out.stat().st_size:,} bytes); total {time.time() - t0:.0f} s")
    print("config: " + json.dumps(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
