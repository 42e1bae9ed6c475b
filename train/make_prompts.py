"""Write the prompts of the speculative-decoding tests and bench.

Prompts are snippets of the validation part of the training corpus (the last
5 % of the Python standard library's top-level modules, concatenated in sorted
file-name order, as ``train/train_lm.py`` builds it): 128 line starts chosen
with a fixed seed, each the next 24 to 48 bytes of plain ASCII. The file is
shipped (``models/prompts.json``) so the tests do not depend on the Python
version of the machine that runs them.

    python train/make_prompts.py [--out models/prompts.json] [--count 128] [--seed 0]
"""

import argparse
import hashlib
import json
from pathlib import Path
import sys
import sysconfig

import numpy as np


def corpus():
    """The training corpus' bytes (the recipe of ``train/train_lm.py``)."""
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(p for p in stdlib.glob("*.py") if p.is_file())
    return b"\n".join(p.read_bytes() for p in files)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="models/prompts.json", help="output file (JSON list of strings)")
    p.add_argument("--count", type=int, default=128, help="number of prompts (default: 128)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    args = p.parse_args(argv)
    if args.count < 1:
        p.error(f"--count must be at least 1, not {args.count}")
    data = corpus()
    valid = data[int(len(data) * 0.95):]
    starts = [i + 1 for i in range(len(valid) - 64) if valid[i] == ord("\n")]
    rng = np.random.default_rng(args.seed)
    prompts = []
    for i in rng.permutation(len(starts)):
        start = starts[i]
        length = int(rng.integers(24, 49))
        text = valid[start:start + length]
        if text.strip() and all(32 <= b < 127 or b == 10 for b in text):
            prompts.append(text.decode("ascii"))
        if len(prompts) == args.count:
            break
    out = {"recipe": "train/make_prompts.py", "python": sys.version.split()[0],
           "corpus_sha256": hashlib.sha256(data).hexdigest(), "seed": args.seed,
           "prompts": prompts}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {len(prompts)} prompts to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
