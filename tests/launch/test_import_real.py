"""Import of real, public launch configurations (tests/launch/configs/README.md names each file's source)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rainier.launch import Framework, read_launch
from rainier.workload import get_model

CONFIGS = Path(__file__).parent / "configs"

# file, devices given (None: the file's own), framework, expected plan text, expected catalog model (None: open)
TRAINING = [
    (
        "megatron_train_gpt3_175b_distributed.sh",
        128,
        Framework.MEGATRON,
        "tp=8,pp=16,dp=1,cp=1,ep=1,vpp=1,sp=false,zero=0,mbs=1,gbs=1536,recompute=none,precision=fp16,schedule=1f1b,"
        "unit=device",
        None,
    ),
    (
        "megatron_train_llama3_8b_h100_fp8.sh",
        None,
        Framework.MEGATRON,
        "tp=1,pp=1,dp=8,cp=1,ep=1,vpp=1,sp=false,zero=1,mbs=1,gbs=128,recompute=none,precision=fp8,schedule=1f1b,"
        "unit=device,fp8_recipe=delayed",
        "megatron-import",
    ),  # complete shape; llama-3-8b and 3.1-8b alike
    (
        "megatron_train_mixtral_8x7b_distributed.sh",
        32,
        Framework.MEGATRON,
        "tp=1,pp=4,dp=8,cp=1,ep=8,vpp=1,sp=false,zero=1,mbs=1,gbs=256,recompute=none,precision=bf16,schedule=1f1b,"
        "unit=device",
        "mixtral-8x7b",
    ),
    (
        "nemo_megatron_gpt_config.yaml",
        None,
        Framework.NEMO,
        "tp=1,pp=1,dp=1,cp=1,ep=1,vpp=1,sp=false,zero=0,mbs=4,gbs=8,recompute=none,precision=bf16,schedule=1f1b,"
        "unit=device",
        None,
    ),
    (
        "nemo_megatron_llama_config.yaml",
        None,
        Framework.NEMO,
        "tp=1,pp=1,dp=1,cp=1,ep=1,vpp=1,sp=false,zero=0,mbs=4,gbs=8,recompute=none,precision=fp32,schedule=1f1b,"
        "unit=device",
        "llama-2-7b",
    ),
    (
        "maxtext_gpu_llama3_8b.yml",
        8,
        Framework.MAXTEXT,
        "tp=1,pp=1,dp=8,cp=1,ep=1,vpp=1,sp=false,zero=3,mbs=12,gbs=96,recompute=none,precision=bf16,schedule=1f1b,"
        "unit=device",
        "llama-3-8b",
    ),
    (
        "maxtext_gpu_llama2_70b.yml",
        64,
        Framework.MAXTEXT,
        "tp=1,pp=1,dp=64,cp=1,ep=1,vpp=1,sp=false,zero=3,mbs=6,gbs=384,recompute=full,precision=bf16,schedule=1f1b,"
        "unit=device",
        "llama-2-70b",
    ),
    (
        "maxtext_gpu_mixtral_8x7b.yml",
        8,
        Framework.MAXTEXT,
        "tp=1,pp=1,dp=8,cp=1,ep=1,vpp=1,sp=false,zero=3,mbs=12,gbs=96,recompute=none,precision=bf16,schedule=1f1b,"
        "unit=device,capacity=1.0",
        "mixtral-8x7b",
    ),
    (
        "nxd_hf_llama3_8B_config.yaml",
        None,
        Framework.NXD,
        "tp=32,pp=1,dp=4,cp=1,ep=1,vpp=1,sp=true,zero=1,mbs=1,gbs=1024,recompute=selective,precision=bf16,"
        "schedule=1f1b,unit=core",
        None,
    ),
    (
        "nxd_hf_llama3_70B_config.yaml",
        None,
        Framework.NXD,
        "tp=32,pp=8,dp=2,cp=1,ep=1,vpp=1,sp=true,zero=1,mbs=1,gbs=1024,recompute=selective,precision=bf16,"
        "schedule=1f1b,unit=core,recompute_modules=core_attn+mlp",
        None,
    ),
    (
        "nxd_megatron_llama_7B_config.yaml",
        None,
        Framework.NXD,
        "tp=8,pp=1,dp=4,cp=1,ep=1,vpp=1,sp=true,zero=1,mbs=1,gbs=1024,recompute=selective,precision=bf16,"
        "schedule=1f1b,unit=core,flash=false",
        "llama-2-7b",
    ),
    (
        "mbridge_llama3_8b_sft_gb200_fp8_mx_v1.yaml",
        8,
        Framework.BRIDGE,
        "tp=1,pp=1,dp=8,cp=1,ep=1,vpp=1,sp=false,zero=1,mbs=1,gbs=8,recompute=none,precision=fp8,schedule=1f1b,"
        "unit=device,fp8_recipe=mxfp8",
        "llama-3-8b",
    ),  # the whole shape is stated; hf_model_id names the catalog model, its dimensions checked
    (
        "mbridge_llama3_70b_sft_gb200_fp8_mx_v1.yaml",
        32,
        Framework.BRIDGE,
        "tp=1,pp=8,dp=4,cp=1,ep=1,vpp=10,sp=false,zero=1,mbs=1,gbs=32,recompute=none,precision=fp8,"
        "schedule=interleaved,unit=device,fp8_recipe=mxfp8",
        "llama-3-70b",
    ),
]


@pytest.mark.parametrize(("name", "devices", "framework", "plan", "model"), TRAINING, ids=[t[0] for t in TRAINING])
def test_real_training_config(
    name: str, devices: int | None, framework: Framework, plan: str, model: str | None
) -> None:
    config = read_launch(CONFIGS / name, num_devices=devices)
    assert config.framework is framework
    assert config.plan is not None and config.plan.describe() == plan
    assert (config.model.name if config.model is not None else None) == model
    assert config.model is not None or config.model_missing


# file, framework, (tp, pp, ep, batch, weights, kv), catalog model
SERVING = [
    ("vllm_llama31_405b_tp8_pp2.sh", Framework.VLLM, (8, 2, 1, 256, "bf16", "bf16"), "llama-3.1-405b"),
    ("vllm_llama31_405b_fp8_tp8.sh", Framework.VLLM, (8, 1, 1, 256, "fp8", "bf16"), "llama-3.1-405b"),
    ("vllm_amd_llama31_70b_tp4.sh", Framework.VLLM, (4, 1, 1, 1024, "bf16", "bf16"), "llama-3.1-70b"),
    ("trtllm_qwen3_235b_b200_1k1k_tp8_conc32.yaml", Framework.TRTLLM, (8, 1, 1, 2048, "bf16", "fp8"), None),
    ("trtllm_curated_llama-3.3-70b.yaml", Framework.TRTLLM, (1, 1, 1, 1024, "bf16", "fp8"), None),
    ("trtllm_serve_megatron_speculative.sh", Framework.TRTLLM, (8, 1, 1, 32, "bf16", "bf16"), None),
    # SGLang 0.4: --enable-dp-attention alone sets dp = tp, the experts stay tensor-parallel (read as tp, with a note)
    ("sglang_dsv3_8xh200_dp_attention.sh", Framework.SGLANG, (8, 1, 1, 2048, "bf16", "bf16"), "deepseek-v3"),
    ("sglang_dsv3_two_h20_nodes.sh", Framework.SGLANG, (16, 1, 1, 2048, "bf16", "bf16"), "deepseek-v3"),
]


@pytest.mark.parametrize(("name", "framework", "layout", "model"), SERVING, ids=[s[0] for s in SERVING])
def test_real_serving_config(name: str, framework: Framework, layout: tuple[object, ...], model: str | None) -> None:
    config = read_launch(CONFIGS / name)
    assert config.framework is framework
    s = config.serve
    assert s is not None
    assert (s.tp, s.pp, s.ep, s.batch, s.weights.value, s.kv.value) == layout
    assert (config.model.name if config.model is not None else None) == model


def test_assumptions_are_stated() -> None:
    """Framework defaults the file relies on are notes, and unmodelled flags are listed, never dropped."""
    config = read_launch(CONFIGS / "megatron_train_llama3_8b_h100_fp8.sh")
    assert any("--sequence-parallel with tp=1" in n for n in config.notes)
    assert any("delayed" in n for n in config.notes)
    assert "--lr" in config.ignored and "--tensor-model-parallel-size" not in config.ignored


def test_world_size_needed() -> None:
    with pytest.raises(ValueError, match="give the device count"):
        read_launch(CONFIGS / "megatron_train_gpt3_175b_distributed.sh")
    with pytest.raises(ValueError, match="give --devices"):
        read_launch(CONFIGS / "maxtext_gpu_llama3_8b.yml")


@pytest.mark.parametrize(("name", "devices"), [(t[0], t[1]) for t in TRAINING if t[2] is Framework.BRIDGE])
def test_megatron_bridge_configs_state_the_whole_model(name: str, devices: int, tmp_path: Path) -> None:
    """A dumped ConfigContainer states every dimension and the vocabulary (no catalog guess), trains on
    dataset.seq_length, and round-trips: import(export(its plan and model)) is the same plan and model."""
    from rainier.launch import write_launch

    config = read_launch(CONFIGS / name, num_devices=devices)
    assert config.model is not None and config.plan is not None and not config.model_missing
    catalog = get_model(config.model.name)
    for field in ("num_layers", "hidden_dim", "num_heads", "num_kv_heads", "head_dim", "ffn_hidden_dim", "vocab_size"):
        assert getattr(config.model, field) == getattr(catalog, field), field
    assert config.model.seq_len == 4096 and config.model.mlp_activation.value == "swiglu"
    assert "train.global_batch_size" not in config.ignored and "optimizer.lr" in config.ignored
    with pytest.raises(ValueError, match="does not state its GPU count; give it"):
        read_launch(CONFIGS / name)
    exported = tmp_path / "exported.yaml"
    exported.write_text(write_launch(Framework.BRIDGE, config.model, plan=config.plan), encoding="utf-8")
    again = read_launch(exported, num_devices=config.plan.num_ranks)
    assert again.framework is Framework.BRIDGE and again.plan == config.plan
    assert again.model is not None and again.model.to_dict() == config.model.to_dict()
