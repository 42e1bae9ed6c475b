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

from golden import arith, specdec, speq16
from golden.model import DEFAULT_WEIGHTS, Session, TinyLM


PROMPTS = json.loads((Path(__file__).resolve().parents[1] / "models" / "prompts.json")
                     .read_text())["prompts"]
TOKENS = 12
CHUNKS = 4


# Session scope: conftest.py orders the tests across modules, and pytest tears a
# module fixture down whenever the next test is another module's.
@pytest.fixture(scope="session")
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


#: `specdec.autoregressive` of a prompt (by index) and the session's model:
#: the lossless checks below compare several decodings with the same one.
_PLAIN = {}


def _plain(model, i):
    key = id(model), i          # the session's model lives as long as the cache
    if key not in _PLAIN:
        _PLAIN[key] = specdec.autoregressive(model, list(PROMPTS[i].encode()), TOKENS)[0]
    return _PLAIN[key]


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_speculative_output_equals_autoregressive(model, chunk):
    proposed = accepted = 0
    for i in range(chunk, len(PROMPTS), CHUNKS):
        prompt = list(PROMPTS[i].encode())
        gamma = 1 + i % 8
        plain = _plain(model, i)
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
    linear = len(model.linear_shapes())
    # Per forward: the linear passes, Q K^T and P V per layer and head, a
    # cache write per layer.
    per_forward = linear + 2 * model.layers * model.heads + model.layers
    assert len(stats.verify_passes) == stats.rounds * per_forward
    assert {t for _, _, _, t in stats.verify_passes} <= set(range(1, 5))
    assert {mode for mode, *_ in stats.verify_passes} == {"verify", "kv", "kv_write"}
    assert {mode for mode, *_ in stats.draft_passes} == {"draft", "kv_draft", "kv_write"}
    assert all(t == 1 for _, _, _, t in stats.draft_passes)
    # No draft prefill and no catch-up step: one draft forward per proposal.
    assert len(stats.draft_passes) == stats.proposed * per_forward
    # The target writes 16 bits per value, the half-width draft's scratch 8.
    assert {(n, b) for mode, n, b, _ in stats.verify_passes if mode == "kv_write"} == \
        {(2 * model.d, 16)}
    assert {(n, b) for mode, n, b, _ in stats.draft_passes if mode == "kv_write"} == \
        {(2 * model.d, 8)}


def test_the_own_cache_design_prefills_and_catches_up(model):
    # The earlier design, kept for comparison: the draft's own FP16 cache is
    # filled by a prefill (not logged) and, after a fully accepted round, a
    # catch-up forward of the last proposal.
    prompt = list(PROMPTS[0].encode())
    _, stats = specdec.speculative(model, prompt, 12, 2, kv="own")
    linear = len(model.linear_shapes())
    per_forward = linear + 2 * model.layers * model.heads + model.layers
    full = sum(1 for g, n in zip(stats.round_proposals, stats.per_round) if n == g + 1)
    catch_up = full - (stats.per_round[-1] == stats.round_proposals[-1] + 1)
    assert full >= 2
    assert len(stats.draft_passes) == (stats.proposed + catch_up) * per_forward
    assert {mode for mode, *_ in stats.draft_passes} == {"draft", "kv", "kv_write"}
    assert stats.draft_kv_bytes == stats.target_kv_bytes


@pytest.mark.parametrize("kv", ["own", "shared"])
def test_every_kv_design_is_lossless(model, kv):
    for i in range(5, len(PROMPTS), len(PROMPTS) // 5):
        prompt = list(PROMPTS[i].encode())
        gamma = 2 + i % 6
        plain = _plain(model, i)
        spec, _ = specdec.speculative(model, prompt, TOKENS, gamma, kv=kv)
        assert spec == plain, f"prompt {i}, gamma {gamma}, kv {kv}: {spec} != {plain}"


def test_kv_storage_is_the_fp16_cache_plus_the_scratch(model):
    # SPEC section 2a: one cache; the draft adds gamma positions of its high
    # plane (1 byte per value) and nothing else.
    prompt = list(PROMPTS[4].encode())
    _, plain = specdec.autoregressive(model, prompt, 4)
    fp16 = Session(model, "verify").kv_bytes
    assert fp16 == 2 * model.layers * model.context * model.d * 2
    for gamma in (1, 4, 7):
        _, stats = specdec.speculative(model, prompt, 8, gamma)
        assert stats.target_kv_bytes == fp16
        assert stats.draft_kv_bytes == 2 * model.layers * gamma * model.d * 1
        _, stats = specdec.speculative(model, prompt, 8, gamma, kv="shared")
        assert stats.draft_kv_bytes == 2 * model.layers * gamma * model.d * 2
        _, stats = specdec.speculative(model, prompt, 8, gamma, kv="own")
        assert stats.draft_kv_bytes == fp16


def test_the_draft_reads_the_targets_cache_at_half_width(model):
    # After a prompt of 7 tokens the target caches 7 positions; the draft's
    # first forward reads them through kv_draft (the high plane, midpoint
    # fill) and its own new position from its scratch, the same way; its
    # second forward reads both scratch positions.
    tokens = list(PROMPTS[6].encode())[:9]
    target = Session(model, "verify")
    target.forward(tokens[:7])
    draft = Session(model, "draft", target=target, half=True, scratch=2)
    draft.trace = []
    draft.forward(tokens[7:8])
    draft.forward(tokens[8:9])
    dh = model.d // model.heads
    assert draft.length == 9 and target.length == 7
    for layer, head, kind, x, w, y in draft.trace:
        cols = slice(head * dh, (head + 1) * dh)
        n = w.shape[0] if kind == "qk" else (x[0] != 0).sum()
        assert n in (8, 9)
        cached = (target.k_cache if kind == "qk" else target.v_cache)[layer, :7, cols]
        read = w[:7] if kind == "qk" else w[:, :7].T
        assert read.view(np.uint16).tolist() == speq16.kv_draft(cached).view(np.uint16).tolist()
        # Every value read, the scratch's too, carries the midpoint fill (or
        # 0 under exponent 31): the low plane is never read.
        low = (w.view(np.uint16) & 0xFF)[:, :n] if kind == "pv" else w.view(np.uint16) & 0xFF
        assert set(np.unique(low).tolist()) <= {0x80, 0x00}
        assert y.view(np.uint32).tolist() == arith.verify_gemm(x, w).view(np.uint32).tolist()
    # The scratch holds at most its positions; it is dropped after the round.
    with pytest.raises(ValueError, match="scratch of 2 positions"):
        draft.forward(tokens[:1])
    draft.drop_scratch()
    assert draft.length == 7


def test_the_shared_draft_differs_from_the_own_cache_draft(model):
    # Reading the target's cache (at half width) changes the draft's logits:
    # the design is not a renaming of the earlier one.
    tokens = list(PROMPTS[7].encode())[:12]
    target = Session(model, "verify")
    target.forward(tokens[:11])
    shared = Session(model, "draft", target=target, half=True, scratch=1)
    own = Session(model, "draft")
    own.forward(tokens[:11])
    assert not np.array_equal(shared.forward(tokens[11:]), own.forward(tokens[11:]))


@pytest.mark.parametrize("kwargs,message", [
    (dict(mode="verify", target=True, scratch=1), "only a draft session shares"),
    (dict(mode="draft", target=True, scratch=0), "scratch must be at least 1"),
    (dict(mode="draft", half=True), "need a target"),
])
def test_session_errors(model, kwargs, message):
    if kwargs.get("target"):
        kwargs["target"] = Session(model, "verify")
    mode = kwargs.pop("mode")
    with pytest.raises(ValueError, match=message):
        Session(model, mode, **kwargs)


def test_attention_passes_read_the_fp16_cache(model):
    # A forward of 3 tokens after 6: per layer and head, Q K^T over the 9
    # cached keys and P V over the 9 values padded to 12; the attention
    # weights are zero past each token's own position and in the padding.
    tokens = list(PROMPTS[3].encode())[:9]
    s = Session(model, "draft")
    s.forward(tokens[:6])
    s.trace = []
    s.forward(tokens[6:])
    dh = model.d // model.heads
    assert len(s.trace) == 2 * model.layers * model.heads
    for layer, head, kind, x, w, y in s.trace:
        assert x.dtype == w.dtype == np.float16 and y.dtype == np.float32
        cols = slice(head * dh, (head + 1) * dh)
        if kind == "qk":
            assert x.shape == (3, dh) and w.shape == (9, dh) and y.shape == (3, 9)
            assert w.view(np.uint16).tolist() == s.k_cache[layer, :9, cols].view(np.uint16).tolist()
        else:
            assert x.shape == (3, 12) and w.shape == (dh, 12) and y.shape == (3, dh)
            assert not w[:, 9:].any() and (w[:, :9] == s.v_cache[layer, :9, cols].T).all()
            for r in range(3):
                assert not x[r, 7 + r:].any() and (x[r, :7 + r] > 0).any()
                assert abs(float(x[r].astype(np.float32).sum()) - 1) < 0.01
        assert y.view(np.uint32).tolist() == arith.verify_gemm(x, w).view(np.uint32).tolist()


@pytest.mark.parametrize("mode,kv", [("draft", "half"), ("draft", "own"), ("verify", "half")])
def test_a_forward_costs_what_the_step_model_says(model, mode, kv):
    # golden.projection's StepModel, from the shapes alone, and the passes a
    # session logs give the same cycles, bits and MACs: a draft sharing the
    # target's cache at half width, a draft with its own cache, the target.
    from golden.projection import Machine, Shape, StepModel
    from hw.config import SpeqConfig
    steps = StepModel(Shape.of(model), Machine.from_config(SpeqConfig(), 1.0), kv)
    if mode == "draft" and kv == "half":
        target = Session(model, "verify")
        target.forward(list(b"hello, wor"))
        s = Session(model, "draft", target=target, half=True, scratch=3)
    else:
        s = Session(model, mode)
        s.forward(list(b"hello, wor"))
        s.passes.clear()
    s.forward(list(b"ld!"))
    assert steps.logged(s.passes) == steps.step(mode, 10, 3)
    # A draft forward over 3 tokens is 3 draft passes per layer.
    assert steps.pass_cost("draft", 128, 128, 3) == steps.pass_cost("draft", 128, 128, 1) * 3


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
