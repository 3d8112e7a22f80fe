"""import(export(plan)) == plan, for random plans each framework can express (and serving layouts)."""

from __future__ import annotations

from pathlib import Path
from tempfile import TemporaryDirectory

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rainier.errors import InputError
from rainier.launch import Framework, read_launch, write_launch
from rainier.parallel.plan import (
    DEFAULT_RECOMPUTE_MODULES,
    RECOMPUTE_MODULES,
    DegreeUnit,
    Fp8Recipe,
    Plan,
    Recompute,
    Schedule,
)
from rainier.precision import Precision
from rainier.serve.cost import WeightFormat
from rainier.serve.estimate import ServeConfig
from rainier.workload import get_model

SUFFIX = {Framework.MEGATRON: ".sh", Framework.VLLM: ".sh", Framework.SGLANG: ".sh", Framework.TRTLLM: ".yaml"}
DENSE = get_model("llama-3-70b")
MOE = get_model("mixtral-8x7b")


def _roundtrip(framework: Framework, text: str, num_devices: int | None = None):  # type: ignore[no-untyped-def]
    with TemporaryDirectory() as folder:
        path = Path(folder) / f"launch{SUFFIX.get(framework, '.yaml')}"
        path.write_text(text)
        return read_launch(path, framework=framework, num_devices=num_devices)


@st.composite
def plans(draw: st.DrawFn, framework: Framework) -> Plan:
    """Valid plans restricted to what ``framework`` can say."""
    pow2 = st.sampled_from([1, 2, 4, 8])
    tp, dp, mbs = draw(pow2), draw(pow2), draw(pow2)
    pp = draw(pow2) if framework not in (Framework.MAXTEXT,) else 1
    cp = draw(st.sampled_from([1, 2]))
    ep = draw(st.sampled_from([e for e in (1, 2, 4) if dp % e == 0]))
    vpp = draw(st.sampled_from([1, 2, 5])) if pp > 1 and framework is not Framework.MAXTEXT else 1
    micro = draw(st.integers(1, 8)) * (pp if vpp > 1 else 1)
    recompute = draw(st.sampled_from(list(Recompute)))
    values: dict[str, object] = {
        "tp_degree": tp,
        "pp_degree": pp,
        "dp_degree": dp,
        "cp_degree": cp,
        "ep_degree": ep,
        "vpp_degree": vpp,
        "schedule": Schedule.INTERLEAVED if vpp > 1 else Schedule.ONE_F_ONE_B,
        "mbs": mbs,
        "gbs": dp * mbs * micro,
        "recompute": recompute,
    }
    if recompute is Recompute.FULL and framework in (Framework.MEGATRON, Framework.NEMO, Framework.BRIDGE):
        values["recompute_layers"] = draw(st.sampled_from([None, 1, 2, 3]))
    if framework in (Framework.MEGATRON, Framework.BRIDGE):
        precision = draw(st.sampled_from([Precision.BF16, Precision.FP16, Precision.FP8, Precision.FP32]))
        values.update(
            precision=precision,
            fp8_recipe=draw(st.sampled_from(list(Fp8Recipe))) if precision is Precision.FP8 else None,
            sequence_parallel=tp > 1 and draw(st.booleans()),
            zero_stage=draw(st.sampled_from([0, 1, 2, 3])),
            tp_comm_overlap=tp > 1 and draw(st.booleans()),
            moe_a2a_overlap=draw(st.booleans()),
            capacity_factor=draw(st.sampled_from([None, 1.0, 1.25])),
            flash_attention=draw(st.booleans()),
            expert_tp_degree=draw(st.sampled_from([None, 1])),
            recompute_modules=tuple(draw(st.sets(st.sampled_from(RECOMPUTE_MODULES), min_size=1))),
            ep_dedup=draw(st.booleans()),
        )
        if framework is Framework.BRIDGE and recompute is not Recompute.SELECTIVE:
            values["recompute_modules"] = DEFAULT_RECOMPUTE_MODULES  # a ConfigContainer lists them for selective only
        if pp > 1 and vpp == 1 and draw(st.booleans()):
            values.update(first_stage_layers=draw(st.integers(0, 4)), last_stage_layers=draw(st.integers(0, 4)))
    elif framework is Framework.NEMO:
        precision = draw(st.sampled_from([Precision.BF16, Precision.FP16, Precision.FP8, Precision.FP32]))
        values.update(
            precision=precision,
            fp8_recipe=draw(st.sampled_from(list(Fp8Recipe))) if precision is Precision.FP8 else None,
            sequence_parallel=tp > 1 and draw(st.booleans()),
            zero_stage=draw(st.sampled_from([0, 1, 3])),
            tp_comm_overlap=tp > 1 and draw(st.booleans()),
        )
    elif framework is Framework.MAXTEXT:
        replicas = dp // ep
        zero = draw(st.sampled_from([0, 3])) if replicas > 1 else 0
        values.update(
            precision=draw(st.sampled_from([Precision.BF16, Precision.INT8, Precision.FP8])),
            zero_stage=zero,
            capacity_factor=draw(st.sampled_from([None, 1.0, 1.25])),
            flash_attention=draw(st.booleans()),
        )
    else:  # NxD: NeuronCore degrees
        values.update(
            degrees_unit=DegreeUnit.CORE,
            precision=draw(st.sampled_from([Precision.BF16, Precision.FP32])),
            sequence_parallel=tp > 1 and draw(st.booleans()),
            zero_stage=draw(st.sampled_from([0, 1])),
            flash_attention=draw(st.booleans()),
            recompute_modules=tuple(
                draw(st.sets(st.sampled_from(["core_attn", "mlp", "moe", "layernorm"]), min_size=1))
            ),
        )
    return Plan(**values)  # type: ignore[arg-type]


TRAINING_FRAMEWORKS = [Framework.MEGATRON, Framework.NEMO, Framework.MAXTEXT, Framework.NXD, Framework.BRIDGE]


@pytest.mark.parametrize("framework", TRAINING_FRAMEWORKS)
def test_training_roundtrip(framework: Framework) -> None:
    @settings(max_examples=60, deadline=None)
    @given(plan=plans(framework), moe=st.booleans())
    def check(plan: Plan, moe: bool) -> None:
        shape = MOE if moe and framework is not Framework.NXD else DENSE
        if plan.ep_degree > 1 and shape.moe is None:
            shape = MOE if framework is not Framework.NXD else DENSE
        # a Megatron-Bridge ConfigContainer does not state its GPU count: given as --devices would
        devices = plan.num_ranks if framework is Framework.BRIDGE else None
        config = _roundtrip(framework, write_launch(framework, shape, plan=plan), devices)
        assert config.plan == plan
        if framework in (Framework.MEGATRON, Framework.MAXTEXT, Framework.BRIDGE):  # these state the whole shape
            assert config.model is not None
            assert config.model.to_dict() | {"name": shape.name} == shape.to_dict()

    check()


@settings(max_examples=60, deadline=None)
@given(
    framework=st.sampled_from([Framework.VLLM, Framework.TRTLLM]),
    tp=st.sampled_from([1, 2, 4, 8]),
    pp=st.sampled_from([1, 2]),
    expert=st.booleans(),
    batch=st.integers(1, 4096),
    weights=st.sampled_from([WeightFormat.BF16, WeightFormat.FP16, WeightFormat.FP8]),
    kv_fp8=st.booleans(),
)
def test_serving_roundtrip(
    framework: Framework, tp: int, pp: int, expert: bool, batch: int, weights: WeightFormat, kv_fp8: bool
) -> None:
    if framework is Framework.TRTLLM and weights is WeightFormat.FP8:
        weights = WeightFormat.BF16  # the weight format is the checkpoint's, not a TensorRT-LLM option
    kv = Precision.FP8 if kv_fp8 else None
    if framework is Framework.VLLM and weights is WeightFormat.FP16 and kv is None:
        kv = Precision.FP16  # vLLM's auto KV cache is the activation dtype
    layout = ServeConfig(tp=tp, pp=pp, ep=tp if expert else 1, batch=batch, weights=weights, kv_precision=kv)
    config = _roundtrip(framework, write_launch(framework, MOE, serve=layout, model_name="mixtral-8x7b"))
    got = config.serve
    assert got is not None
    assert (got.tp, got.pp, got.ep, got.batch, got.weights, got.kv) == (tp, pp, layout.ep, batch, weights, layout.kv)
    if framework is Framework.VLLM:  # the model is a vllm serve argument; trtllm-serve takes it beside the YAML
        assert config.model is not None and config.model.name == "mixtral-8x7b"


@pytest.mark.parametrize(
    ("framework", "change", "field"),
    [
        (Framework.MEGATRON, {"schedule": Schedule.ZB_V, "pp_degree": 2}, "schedule"),
        (Framework.MEGATRON, {"lora": True}, "lora"),
        (Framework.MEGATRON, {"offload": ("optimizer",)}, "offload"),
        (Framework.NEMO, {"offload": ("activations",)}, "offload"),
        (Framework.MAXTEXT, {"offload": ("weights",), "zero_stage": 3}, "offload"),
        (Framework.NEMO, {"zero_stage": 2}, "zero"),
        (Framework.BRIDGE, {"lora": True}, "lora"),
        (Framework.BRIDGE, {"schedule": Schedule.ZB_V, "pp_degree": 2}, "schedule"),
        (Framework.MAXTEXT, {"sequence_parallel": True}, "sp"),
        (Framework.MAXTEXT, {"pp_degree": 2, "dp_degree": 1}, "pp"),
        (Framework.NXD, {}, "unit"),
        (Framework.NXD, {"degrees_unit": DegreeUnit.CORE, "cp_degree": 1, "precision": Precision.FP8}, "precision"),
    ],
)
def test_refused_fields(framework: Framework, change: dict[str, object], field: str) -> None:
    plan = Plan(tp_degree=2, dp_degree=2, mbs=1, gbs=8).with_(**change)
    with pytest.raises(ValueError, match=rf"^{field}=.* cannot be written for {framework.value}"):
        write_launch(framework, DENSE, plan=plan)


@settings(max_examples=40, deadline=None)
@given(
    tp=st.sampled_from([1, 2, 4, 8]),
    dp_attention=st.sampled_from([1, 2, 4]),
    pp=st.sampled_from([1, 2]),
    expert=st.booleans(),
    overlap=st.booleans(),
    balance=st.booleans(),
    batch=st.integers(1, 4096),
    weights=st.sampled_from([WeightFormat.BF16, WeightFormat.FP16, WeightFormat.FP8]),
    kv_fp8=st.booleans(),
)
def test_sglang_roundtrip(
    tp: int,
    dp_attention: int,
    pp: int,
    expert: bool,
    overlap: bool,
    balance: bool,
    batch: int,
    weights: WeightFormat,
    kv_fp8: bool,
) -> None:
    """rainier's layout -> sglang.launch_server flags -> the same layout, data-parallel attention included."""
    ep = tp * dp_attention if dp_attention > 1 or expert else 1
    kv = Precision.FP8 if kv_fp8 else (Precision.FP16 if weights is WeightFormat.FP16 else Precision.BF16)
    layout = ServeConfig(tp=tp, pp=pp, ep=ep, dp_attention=dp_attention, batch=batch, weights=weights,
                         kv_precision=kv, two_batch_overlap=overlap and ep > 1, eplb=balance and ep > 1)  # fmt: skip
    text = write_launch(Framework.SGLANG, MOE, serve=layout, model_name="mixtral-8x7b", devices_per_node=8)
    assert ("--nnodes" in text) == (tp * dp_attention * pp > 8)
    config = _roundtrip(Framework.SGLANG, text)
    got = config.serve
    assert got is not None and config.model is not None and config.model.name == "mixtral-8x7b"
    assert (got.tp, got.dp_attention, got.pp, got.ep, got.batch, got.weights, got.kv, got.two_batch_overlap) == (
        tp, dp_attention, pp, ep, batch, weights, kv, layout.two_batch_overlap)  # fmt: skip
    assert got.eplb == layout.eplb


def test_eplb_is_written_for_vllm_and_sglang_and_refused_for_trtllm() -> None:
    """``--enable-eplb`` in vLLM and SGLang; TensorRT-LLM's balancer needs a file of measured expert statistics."""
    layout = ServeConfig(tp=8, ep=8, batch=64, eplb=True)
    text = write_launch(Framework.VLLM, MOE, serve=layout, model_name="mixtral-8x7b")
    assert "--enable-eplb" in text
    got = _roundtrip(Framework.VLLM, text).serve
    assert got is not None and got.eplb and got.ep == 8
    with pytest.raises(ValueError, match=r"^eplb=True cannot be written for trtllm"):
        write_launch(Framework.TRTLLM, MOE, serve=layout)
    with pytest.raises(ValueError, match=r"^eplb=True is invalid"):
        ServeConfig(tp=8, batch=64, eplb=True)  # nothing to balance without expert parallelism


def test_sglang_writes_wide_expert_parallelism_as_its_docs_do() -> None:
    """tp 8 x 2 attention groups, experts over 16 ranks: SGLang's "--enable-dp-attention --tp 16 --dp 2" (2 DP
    groups of 8 TP GPUs; sgl-project/sglang docs/basic_usage/deepseek_v3.md), the experts over all 16 by DeepEP."""
    layout = ServeConfig(tp=8, ep=16, dp_attention=2, batch=512, weights=WeightFormat.FP8)
    text = write_launch(Framework.SGLANG, MOE, serve=layout, model_name="deepseek-ai/DeepSeek-V3", devices_per_node=8)
    for flag in ("--tp-size 16", "--dp-size 2", "--enable-dp-attention", "--ep-size 16", "--moe-a2a-backend deepep",
                 "--max-running-requests 512", "--nnodes 2", "--node-rank 0"):  # fmt: skip
        assert flag in text
    assert text.startswith("# one replica on 2 nodes")
    with pytest.raises(ValueError, match=r"^dp_attention=2 cannot be written for vllm"):
        write_launch(Framework.VLLM, MOE, serve=layout)


def test_vllm_refuses_partial_expert_parallelism() -> None:
    with pytest.raises(ValueError, match=r"^ep=2 cannot be written for vllm"):
        write_launch(Framework.VLLM, MOE, serve=ServeConfig(tp=4, ep=2, batch=8))


@pytest.mark.parametrize(
    ("framework", "block", "uniform", "count"),
    [
        (Framework.MEGATRON, "--recompute-method block", "--recompute-method uniform", "--recompute-num-layers 3 \\"),
        (
            Framework.NEMO,
            "activations_checkpoint_method: block",
            "activations_checkpoint_method: uniform",
            "activations_checkpoint_num_layers: 3",
        ),
    ],
)
def test_block_recompute_reads_n_and_uniform_reads_every_layer(
    framework: Framework, block: str, uniform: str, count: str
) -> None:
    """Issue 17: ``block`` with N is ``recompute_layers=N``; ``uniform`` recomputes every layer; block needs N."""
    plan = Plan(tp_degree=8, pp_degree=2, dp_degree=4, mbs=1, gbs=64, recompute=Recompute.FULL, recompute_layers=3)
    text = write_launch(framework, DENSE, plan=plan)
    assert block in text and count in text
    assert _roundtrip(framework, text).plan.recompute_layers == 3
    assert _roundtrip(framework, text.replace(block, uniform)).plan == plan.with_(recompute_layers=None)
    without = "\n".join(line for line in text.splitlines() if count.rstrip(" \\") not in line) + "\n"
    with pytest.raises(InputError, match=r"num.layers"):
        _roundtrip(framework, without)


@pytest.mark.parametrize("framework", [Framework.MAXTEXT, Framework.NXD])
def test_block_recompute_is_refused_where_the_framework_cannot_say_it(framework: Framework) -> None:
    unit = DegreeUnit.CORE if framework is Framework.NXD else DegreeUnit.DEVICE
    plan = Plan(
        dp_degree=8,
        mbs=1,
        gbs=64,
        zero_stage=0,
        recompute=Recompute.FULL,
        recompute_layers=2,
        degrees_unit=unit,
    )
    with pytest.raises(InputError, match="recompute_layers=2"):
        write_launch(framework, DENSE, plan=plan)
