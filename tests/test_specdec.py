"""Speculative decoding with the SPEQ draft is lossless (`golden.specdec`).

The shipped model (``models/speqlm.npz``) decodes the shipped prompts
(``models/prompts.json``) greedily, once plainly with verify passes and once
speculatively with the SPEQ draft; the tokens must be identical for every
prompt. The prompts are split into chunks so that pytest's workers share them.
"""

import json
from pathlib import Path

import numpy as np
import pytest

from golden import specdec
from golden.model import DEFAULT_WEIGHTS, Session, TinyLM


PROMPTS = json.loads((Path(__file__).resolve().parents[1] / "models" / "prompts.json")
                     .read_text())["prompts"]
TOKENS = 12
CHUNKS = 4


@pytest.fixture(scope="module")
def model():
    return TinyLM(DEFAULT_WEIGHTS)


def test_there_are_enough_prompts():
    assert len(PROMPTS) >= 100


def test_verify_pass_gives_each_token_its_single_token_result(model):
    tokens = list(PROMPTS[0].encode())[:9]
    together = Session(model, "verify").forward(tokens)
    alone = Session(model, "verify")
    rows = np.concatenate([alone.forward([tok]) for tok in tokens])
    assert together.view(np.uint32).tolist() == rows.view(np.uint32).tolist()


def test_draft_is_not_the_target(model):
    tokens = list(PROMPTS[1].encode())
    draft = Session(model, "draft").forward(tokens)
    target = Session(model, "verify").forward(tokens)
    assert not np.array_equal(draft, target)
    # ... but close to it: the same greedy choice most of the time.
    assert (draft.argmax(-1) == target.argmax(-1)).mean() > 0.5


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_speculative_output_equals_autoregressive(model, chunk):
    proposed = accepted = 0
    for i in range(chunk, len(PROMPTS), CHUNKS):
        prompt = list(PROMPTS[i].encode())
        gamma = 1 + i % 8
        plain, _ = specdec.autoregressive(model, prompt, TOKENS)
        spec, stats = specdec.speculative(model, prompt, TOKENS, gamma)
        assert spec == plain, f"prompt {i} ({PROMPTS[i]!r}), gamma {gamma}: {spec} != {plain}"
        assert sum(stats.per_round) >= TOKENS and stats.rounds == len(stats.per_round)
        proposed += stats.proposed
        accepted += stats.accepted
    # Rejections happened, so the rollback was exercised.
    assert 0 < accepted < proposed


def test_model_drafts_with_the_default_lanes(model):
    from hw.config import SpeqConfig
    assert (model.F, model.lanes) == (SpeqConfig().draft_frac_bits, SpeqConfig().draft_lanes)


def test_speculative_output_equals_autoregressive_with_four_lanes():
    # The verify pass decides the tokens, so any L keeps decoding lossless.
    model = TinyLM(DEFAULT_WEIGHTS, draft_lanes=4)
    for i in range(0, len(PROMPTS), len(PROMPTS) // 6):
        prompt = list(PROMPTS[i].encode())
        plain, _ = specdec.autoregressive(model, prompt, TOKENS)
        spec, _ = specdec.speculative(model, prompt, TOKENS, 5)
        assert spec == plain, f"prompt {i} ({PROMPTS[i]!r}): {spec} != {plain}"


def test_passes_are_logged_for_the_cycle_model(model):
    prompt = list(PROMPTS[2].encode())
    _, stats = specdec.speculative(model, prompt, 6, 3)
    layers = len(model.linear_shapes())
    assert len(stats.verify_passes) == stats.rounds * layers
    assert {t for mode, _, _, t in stats.verify_passes} <= set(range(1, 5))
    assert all(mode == "draft" and t == 1 for mode, _, _, t in stats.draft_passes)


@pytest.mark.parametrize("argv,message", [
    (["--prompt", "x", "--gamma", "0"], "--gamma must be at least 1, not 0"),
    (["--prompt", "x", "--tokens", "400"], "exceed the model's context of 256"),
    (["--prompt", "x", "--weights", "/nonexistent.npz"], "No such file"),
])
def test_cli_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        specdec.main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
