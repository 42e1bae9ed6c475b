"""Whole decode steps from shapes (`golden.projection`): the model's relations and its CLI."""

import json

import pytest

from golden import perf, projection
from golden.projection import Machine, PRESETS, Shape, StepModel
from hw.config import SpeqConfig


DEFAULT = Machine.from_config(SpeqConfig(), 1000.0)


def test_presets_have_the_published_shapes():
    llama = PRESETS["llama2-7b"]
    # 32 layers of 4 + 3 matrices of 4096 x 4096 and 11008 x 4096, and the head.
    assert llama.weights() == 32 * (4 * 4096 ** 2 + 3 * 11008 * 4096) + 32000 * 4096
    assert PRESETS["llama3.1-8b"].group == 4 and PRESETS["llama3.1-8b"].d_kv == 1024
    assert PRESETS["speqlm"].linears()[:6] == [(128, 128)] * 4 + [(512, 128), (128, 512)]


@pytest.mark.parametrize("sizes,message", [
    (dict(heads=3), "heads (3) must divide d_model (64)"),
    (dict(kv_heads=3), "kv_heads (3) must divide heads (4)"),
    (dict(layers=0), "layers must be a positive integer, not 0"),
    (dict(d_ff=-8), "d_ff must be a positive integer, not -8"),
    (dict(d_model=24, heads=4), "the head dimension must be a multiple of 4"),
])
def test_impossible_shapes(sizes, message):
    base = dict(name="x", layers=2, d_model=64, heads=4, kv_heads=4, d_ff=128, vocab=100)
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Shape(**{**base, **sizes})


def test_a_token_is_its_passes():
    # One FP16 token at cache length c: every linear layer as a baseline
    # pass, Q K^T and P V per layer and KV head over c + 1 keys, and the KV
    # write; each pass as golden.perf.pass_cost counts it.
    shape, c = PRESETS["speqlm"], 37
    model = StepModel(shape, DEFAULT)
    m = perf.machine(SpeqConfig())
    cost = lambda mode, n, k, t: perf.pass_cost(mode, n, k, t, mem_latency=8, **m).cycles
    want = sum(cost("baseline", n, k, 1) for n, k in shape.linears())
    want += shape.layers * shape.kv_heads * (cost("kv", c + 1, 32, 1) + cost("kv", 32, 40, 1))
    # The KV write path: a keys and a values KV_WRITE per KV head and layer.
    want += shape.layers * shape.kv_heads * (perf.kv_write_cycles(0, 32, 1) +
                                             perf.kv_write_cycles(1, 32, 1))
    assert model.fp16_token(c).cycles == want


def test_passes_over_more_tokens_than_tmax_split():
    model = StepModel(PRESETS["speqlm"], DEFAULT)
    assert model.pass_cost("verify", 64, 32, 20).cycles == \
        2 * model.pass_cost("verify", 64, 32, 8).cycles + model.pass_cost("verify", 64, 32, 4).cycles


def test_tokens_per_round_and_the_measured_acceptance():
    assert projection.tokens_per_round(4, 0.0) == 1
    assert projection.tokens_per_round(4, 1.0) == 5
    assert projection.tokens_per_round(3, 0.5) == pytest.approx(1.875)
    for kv, measured in projection.MEASURED_TOKENS_PER_ROUND_BY_KV.items():
        for gamma, tokens in measured.items():
            a = projection.measured_acceptance(gamma, kv)
            assert projection.tokens_per_round(gamma, a) == pytest.approx(tokens, rel=1e-9)
    assert projection.MEASURED_TOKENS_PER_ROUND is projection.MEASURED_TOKENS_PER_ROUND_BY_KV["half"]


def test_speedup_falls_with_context_and_acceptance():
    shape = PRESETS["llama2-7b"]
    hbm = Machine.sized_for(460.8, 1000.0)
    assert hbm.mem_bits == 3680 and hbm.pes == 1840
    short, long = (projection.project(shape, hbm, c, 4, 0.9)["speedup"] for c in (256, 32768))
    # The draft reads the whole FP16 KV cache for every token it drafts.
    assert 0 < long < short and short > 1
    # The draft's KV cache is FP16: at long contexts its reads dominate.
    assert projection.project(shape, hbm, 256, 4, 0.0)["speedup"] < 1
    r = projection.project(shape, hbm, 2048, 4, 0.976)
    assert r["speedup"] <= r["linear_only_speedup"]
    assert r["energy_per_token_j"]["speq"] < r["energy_per_token_j"]["fp16"]


def test_head_groups_run_attention_as_multi_head_passes():
    # With head groups G, a layer's Q K^T and P V are ceil(kv_heads / G)
    # multi-head passes (golden.perf, heads=G); a wide array needs them.
    shape, c = PRESETS["llama2-7b"], 2048
    hbm = Machine.sized_for(460.8, 1000.0).best_lanes(shape).round_tmax(shape, 4)
    best = hbm.best_head_groups(shape)
    assert hbm.head_groups == 1 and best.head_groups == 16 and best.pes % 16 == 0
    model = StepModel(shape, best)
    m = dict(pes=best.pes, slots=best.slots, lanes=best.lanes, mem_bits=best.mem_bits,
             mem_latency=8, result_latency=best.result_latency)
    cost = lambda n, k: perf.pass_cost("kv_draft", n, k, 1, heads=16, **m).cycles
    assert model.attention(c + 1, 1, "kv_draft").cycles == \
        shape.layers * 2 * (cost(c + 1, 128) + cost(128, c + 4))
    # Issue 19's HBM2e targets: >= 1.8x at 2k, > 1x at 32k (measured acceptance).
    a = projection.measured_acceptance(4)
    assert projection.project(shape, hbm, c, 4, a)["speedup"] < 1.8
    assert projection.project(shape, best, c, 4, a)["speedup"] >= 1.8
    assert projection.project(shape, best, 32768, 4, a)["speedup"] > 1
    with pytest.raises(ValueError, match=r"the heads of a pass \(3\) must divide the PEs"):
        Machine(pes=16, slots=11, lanes=1, mem_bits=32, tmax=8, clock_mhz=1.0, head_groups=3)


def test_a_half_width_draft_step_reads_the_high_plane():
    # SPEC section 2a: the draft's attention reads 8 bits per cached value;
    # its scratch is written as the writer writes (both planes), and the
    # linear layers are the draft's either way.
    shape, c = PRESETS["llama2-7b"], 4096
    half, own = (StepModel(shape, DEFAULT, kv) for kv in ("half", "own"))
    a, b = half.step("draft", c, 1), own.step("draft", c, 1)
    linear, writes = half.linear("draft", 1), half.kv_write(1)
    assert 2 * (a.bits - linear.bits - writes.bits) == b.bits - linear.bits - writes.bits
    assert half.kv_write(1, 8) == writes
    assert half.attention(c + 1, 1, "kv_draft").bits * 2 == half.attention(c + 1, 1).bits
    # The target's steps are the same in every design.
    assert half.step("verify", c, 5) == own.step("verify", c, 5)


def test_only_the_own_cache_design_catches_up():
    shape, c, a = PRESETS["llama2-7b"], 2048, 0.9
    for kv in projection.KV_DESIGNS:
        model = StepModel(shape, DEFAULT, kv)
        cost, tokens = model.speq_round(c, 4, a)
        want = sum((model.step("draft", c + i, 1) for i in range(4)), projection.Cost())
        want = want + model.step("verify", c, 5)
        if kv == "own":
            want = want + model.step("draft", c + 4, 1) * a ** 4
        assert cost == want and tokens == projection.tokens_per_round(4, a)


def test_kv_storage_is_the_fp16_cache_plus_the_scratch():
    shape, c = PRESETS["llama3.1-8b"], 8192
    per_position = 2 * 2 * shape.d_kv * shape.layers          # K and V, FP16, every layer
    assert per_position == 131072                              # 128 KiB per token
    fp16 = StepModel(shape, DEFAULT).kv_bytes(c)
    assert fp16 == per_position * (c + 1)
    for kv, scratch in (("half", per_position // 2 * 4), ("shared", per_position * 4),
                        ("own", per_position * (c + 4))):
        # The round's target holds c + gamma + 1 positions at its largest.
        assert StepModel(shape, DEFAULT, kv).kv_bytes(c, 4) == fp16 + 4 * per_position + scratch
    r = projection.project(shape, DEFAULT, c, 4, 0.9)
    assert r["kv_bytes"] == {"fp16": fp16, "speq": fp16 + 4 * per_position + per_position * 2}


def test_the_shared_half_width_cache_holds_the_speedup_with_context():
    # Issue 19's figures at the acceptance measured with each design (gamma
    # 4), default array.
    shape = PRESETS["llama2-7b"]
    own, half = ([projection.project(shape, DEFAULT, c, 4, projection.measured_acceptance(4, kv),
                                     kv=kv)["speedup"]
                  for c in (256, 32768)] for kv in ("own", "half"))
    assert all(h > o for h, o in zip(half, own))
    assert half[1] / half[0] > own[1] / own[0]


def test_gqa_reads_less_cache():
    mha = PRESETS["llama2-7b"]
    gqa = Shape("gqa", 32, 4096, 32, 8, 11008, 32000)
    machine = Machine.sized_for(25.6, 1000.0)
    assert StepModel(gqa, machine).attention(8192, 1).bits < \
        StepModel(mha, machine).attention(8192, 1).bits / 3


@pytest.mark.parametrize("name", ["llama2-7b", "llama3.1-8b", "speqlm"])
def test_the_roofline_bounds_every_pass_and_the_speedup(name):
    shape = PRESETS[name]
    for machine in (DEFAULT, Machine.sized_for(25.6, 1000.0)):
        model, bound = StepModel(shape, machine), projection.RooflineModel(shape, machine)
        for mode, n, k, t in [("draft", 4096, 4096, 3), ("verify", 11008, 4096, 5),
                              ("baseline", 4096, 11008, 1), ("kv", 2048, 128, 20),
                              ("kv_draft", 128, 2048, 4)]:
            assert 0 < bound.pass_cost(mode, n, k, t).cycles <= model.pass_cost(mode, n, k, t).cycles
        for context in (256, 32768):
            r = projection.project(shape, machine, context, 4, 0.9)
            assert r["speedup"] <= r["speedup_bound"]


def test_gqa_verify_attention_is_bound_by_its_macs():
    # Llama-3.1-8B's verify round at 32k on the default array: 4 query heads x
    # 5 tokens per cached key, both attention passes at 16 MACs a cycle; then
    # no SPEQ schedule there reaches issue 19's 1.9x (docs/projection.md).
    shape, keys = PRESETS["llama3.1-8b"], 32768
    macs = shape.layers * shape.heads * 5 * keys * shape.head_dim * 2
    bound = projection.RooflineModel(shape, DEFAULT).attention(keys, 5)
    assert bound.cycles == macs / DEFAULT.pes
    r = projection.project(shape, DEFAULT, keys, 4, projection.measured_acceptance(4))
    assert r["speedup"] <= r["speedup_bound"] < 1.9


def test_cli_json(capsys):
    assert projection.main(["--preset", "llama3.1-8b", "--context", "256", "--acceptance", "0.9",
                            "--mem-gbps", "25.6", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["model"] == "Llama-3.1-8B" and r["acceptance_source"] == "given (assumed)"
    assert r["tokens_per_s"] > r["fp16_tokens_per_s"] > 0
    assert r["speedup"] == pytest.approx(r["tokens_per_s"] / r["fp16_tokens_per_s"])
    assert r["speedup"] <= r["speedup_bound"]
    assert set(r["energy_per_token_j"]) == {"fp16", "speq"}
    assert r["kv"] == "half" and r["kv_bytes"]["speq"] > r["kv_bytes"]["fp16"] > 0


def test_cli_table_uses_the_measured_acceptance(capsys):
    assert projection.main(["--preset", "speqlm", "--context", "256", "--gamma", "7"]) == 0
    out = capsys.readouterr().out
    assert "6.13 tokens per round" in out and "measured" in out and "speedup" in out
    assert projection.main(["--preset", "speqlm", "--context", "256", "--gamma", "7",
                            "--kv", "own"]) == 0
    assert "6.38 tokens per round" in capsys.readouterr().out


@pytest.mark.parametrize("argv,message", [
    (["--layers", "2", "--d-model", "64", "--heads", "3", "--kv-heads", "3", "--d-ff", "128",
      "--vocab", "10"], "impossible shape: heads (3) must divide d_model (64)"),
    (["--layers", "2", "--d-model", "64", "--heads", "4", "--kv-heads", "3", "--d-ff", "128",
      "--vocab", "10"], "impossible shape: kv_heads (3) must divide heads (4)"),
    (["--layers", "0", "--d-model", "64", "--heads", "4", "--kv-heads", "4", "--d-ff", "128",
      "--vocab", "10"], "impossible shape: layers must be a positive integer, not 0"),
    (["--layers", "2", "--d-model", "64"], "missing --heads, --kv-heads, --d-ff, --vocab"),
    (["--preset", "speqlm", "--layers", "2"], "give a preset or the sizes"),
    (["--acceptance", "1.5"], "argument --acceptance"),
    (["--gamma", "9"], "nothing measured at gamma 9"),
    (["--mem-gbps", "10", "--mem-bits", "64"], "give the bandwidth or the port width"),
    (["--rows", "1", "--cols", "1", "--mem-bits", "32"], "mem_bits must divide 16 x rows x cols"),
    (["--context", "-1"], "argument --context"),
    (["--kv", "mine"], "argument --kv: invalid choice"),
])
def test_cli_refuses_bad_input(capsys, argv, message):
    with pytest.raises(SystemExit) as exit_info:
        projection.main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_shipped_preset_is_the_shipped_model():
    from golden.model import TinyLM
    model = TinyLM()
    assert [(n, k) for _, n, k in model.linear_shapes()] == PRESETS["speqlm"].linears()
    assert (model.layers, model.d, model.heads, model.vocab) == \
        (PRESETS["speqlm"].layers, PRESETS["speqlm"].d_model, PRESETS["speqlm"].heads,
         PRESETS["speqlm"].vocab)
