"""Time of one inference engine iteration on one model replica, and what fits in its memory.

A replica is ``tp x pp`` ranks (NeuronCores for ``unit=core`` configurations) on one system, or ``tp x
dp_attention x pp`` with data-parallel attention (below). One iteration
prefills some new tokens and decodes one token for each running sequence (continuous batching, Yu et al. 2022).
Its time is a roofline per kernel class plus collectives and fixed overheads (shared/reference/formulas.md,
"Inference"). Each roofline is *soft*: a kernel class whose matmuls take ``c`` and whose HBM traffic takes ``m``
takes ``hypot(c, m) = sqrt(c^2 + m^2)``, not ``max(c, m)``. The two agree far from the ridge (within 1% once one
side is 7x the other, 12% at 2x); at the ridge the kernel takes 1.41x the max, each side running at 71% of its
rate. The max assumes a kernel hides its loads under its matmuls perfectly. A tiled kernel is a pipeline (load a
tile, multiply it) with a few buffers between the stages; when the stages are equally fast, each stalls whenever
the other's tile is late, so near the ridge neither runs at its full rate: two exponential servers in series with
no buffer between them run at 2/3 of either's rate, rising towards 1 as buffers are added (Hillier and Boling 1967,
"Finite queues in series with exponential or Erlang service times", Operations Research 15(2)). That shows the max
is optimistic near the ridge; it does not fix how much. The form and its exponent are chosen, not fitted and not
measured here (no kernel timings of these chips near their ridge are in hand): exponents 2, 3 and 4 all improved
the held-out median on the public inference cases (docs/architecture.md), and 2, the simplest, is applied to both
kernel classes alike. A measured GEMM time against its row count at the ridge would replace it.

- weight GEMMs: ``hypot(2 x active weights x (tokens + tile_tokens) / FLOP/s, weight bytes read / HBM bandwidth)``
  -- compute-bound in prefill, memory-bound in decode. A GEMM computes whole output tiles, so its token rows are
  padded up to a multiple of the tile (NVIDIA, "Matrix Multiplication Background User's Guide", sec. 3, tile
  quantisation): over the batch sizes an engine runs that is half a tile on average, ``tile_tokens`` = the
  smaller side of the chip's ``matmul_tile`` / 2 (libraries orient small GEMMs along it). It gives an
  iteration's time per sequence the gentle fall with the batch that keeps an engine under Poisson load near
  its capacity at a large batch (``serve.inflight``, MLPerf Server); a roofline alone has it flat past the
  ridge. A MoE decode step reads only the experts its tokens select: of ``E`` experts with top-``k`` routing,
  ``n`` tokens touch ``E (1 - (1 - k/E)^n)`` on average, and each pads its own rows. Under expert parallelism
  the step waits for the busiest expert rank: the one with the most routed copies (its experts' GEMMs and its
  share of the all-to-all) and the one that touched the most of its experts (its weight reads), both
  ``serve.expert_load``.
- memory-bound kernels: each token's fused add-norms (on every tensor-parallel rank), rotary embedding,
  activation function and, in a MoE layer, the combine of its experts' output rows move
  ``elementwise_bytes_per_token`` through HBM, after the GEMMs;
- attention: ``hypot(QK^T and AV FLOPs / FLOP/s, KV-cache bytes read / HBM bandwidth + score traffic)``, the
  score traffic being that of an unfused kernel writing and reading the ``s x s`` scores (Korthikanti et al.
  2022 sec. 4; ~0 for fused kernels, Dao et al. 2022);
- tensor parallelism: two all-reduces of the iteration's activations per layer (Megatron-LM's layout), on the
  placed topology levels (``parallel.placement``, alpha-beta, ``perf.collectives``), each by the algorithm the
  engine picks for its size (``serve.allreduce``: one-shot and two-shot peer-to-peer kernels for small messages
  on one NVIDIA node, the collective library's ring or tree, or NVLink SHARP where the switches reduce), plus a
  fitted per-call latency;
- per-layer and per-iteration overheads (kernel launches, sampling, scheduling): fitted per accelerator family;
- the engine's host work per running request each step (scheduling it, preparing its inputs, sampling and
  processing its output), which the GPU waits for: ``sequence_overhead_s`` x the busiest group's requests, one
  value fitted on every case (``serve.fitting.GLOBAL_PARAMETERS``). It is what holds a small model at a batch of
  thousands below its kernels' pace (vLLM v0.5.3 spent 62% of a Llama 3 8B step on one H100 in its API server and
  scheduler: vLLM blog, "vLLM v0.6.0: 2.7x Throughput Improvement and 5x Latency Reduction", 2024-09-05).
  TensorRT-LLM's gptSession (before 0.7) has none: its benchmark runs a static batch as one tensor, sampled on the
  device (``per_request_host_work``);
- the LM head: kept in 16 bits by quantised checkpoints and multiplied at the 16-bit rate; the untied input
  embedding is stored but only gathered from, so it takes memory and no bandwidth (``_unquantised_params``);
- MLA's down-projections (``W_DQ``, ``W_DKV`` with the rotary key: ``workload.params.mla_down_params``) are
  replicated, not split, over the attention's tensor-parallel ranks, as the engines build them (vLLM's and
  SGLang's ``ReplicatedLinear`` q_a_proj / kv_a_proj_with_mqa, NxD Inference's DeepSeek-V3 port): each rank stores
  and reads the whole matrices and multiplies the full latents, ``tp - 1`` copies more than one (1.85 GB a rank
  for DeepSeek-V3 in bf16, four times its share of every other non-expert weight at tp 64); likewise the K/V
  projections of a model with fewer KV heads than tensor-parallel ranks, whose heads are copied to every rank
  (vLLM ``num_kv_head_replicas``, NxD Inference ``REPLICATE_TO_TP_DEGREE``) as their cache is, and the padded
  heads' projections where tp does not divide the heads (transformers-neuronx);
- a MoE model's router (hidden x experts per MoE layer) is likewise replicated on every tensor-parallel rank and
  never quantised: 16 bits on GPUs (vLLM ``ReplicatedLinear`` gate with ``quant_config=None``, ModelOpt's NVFP4
  ``exclude_modules``), fp32 under NxD (``RouterConfig``'s default dtype); 0.43 GB a rank for DeepSeek-V3 at
  tp 64 on Trainium2.

Data-parallel attention (SGLang ``--enable-dp-attention``, vLLM ``--data-parallel-size`` with
``--enable-expert-parallel``, TensorRT-LLM ``enable_attention_dp``; DeepSeek-V3 report sec. 3.4) serves a MoE model
with ``dp_attention`` groups of ``tp`` ranks: each group holds the attention, dense layers, shared experts and LM
head (divided by its ``tp``) and serves ``1/dp_attention`` of the batch, keeping only its own sequences' KV cache;
the routed experts are spread over all ``ep = tp x dp_attention`` ranks, which exchange the whole batch's routed
tokens by a dispatch and a combine all-to-all in every MoE layer. The groups run in lockstep (every MoE layer
waits for all of them), so an iteration takes as long as its busiest group's share: decodes spread evenly, but a
prompt is prefilled whole by the one group it was sent to (round-robin), so the busiest group runs
``ceil(prompts / dp_attention)`` of the iteration's prompts (``busiest_share``; TensorRT-LLM tech blog 10, "ADP
Balance Strategy": the iteration time is the slowest rank's, and a rank prefilling while the others decode holds
them all).

Pipeline stages run one after another for one iteration, so ``pp`` divides memory, not latency. The fitted
fractions live in ``catalog/serve-efficiency.yaml`` (``serve.efficiency``).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rainier.errors import field_error
from rainier.hardware import Accelerator, Cluster, Vendor
from rainier.perf.comm import GroupCost, group_cost
from rainier.precision import Precision
from rainier.serve.allreduce import EngineAllReduce, engine_all_reduce
from rainier.serve.buckets import Buckets, runtime_buckets
from rainier.serve.dispatch import (
    ExpertExchange,
    concurrent_torus_axes,
    expert_all_to_all,
    node_copies_share,
    placed_levels,
)
from rainier.serve.efficiency import ServeEfficiency
from rainier.serve.expert_load import busiest_load, busiest_touched, expected_max_normal, placement_cv2
from rainier.serve.limits import MAX_BATCH, MAX_DEGREE, check_int
from rainier.workload import count_params, kv_cache_bytes_per_token
from rainier.workload.flops import FLOP_PER_MAC, attention_core_flop_per_token, flops_per_token
from rainier.workload.params import ParamCounts, mla_down_params, mla_latent_params
from rainier.workload.shape import PositionEmbedding, TransformerShape, window_keys

ACTIVATION_BYTES = 2.0  # 16-bit activations in the tensor-parallel all-reduces
TABLE_BYTES = 2.0  # the LM head and embedding tables, 16-bit in every checkpoint format (_unquantised_params)
# NxD's MoE router (neuronx_distributed modules/moe: RouterConfig, dtype float32 unless router_dtype is given; NxD
# Inference's DeepSeek-V3 port sets it so) holds its weights in fp32; the GPU engines keep them in 16 bits
ROUTER_BYTES_NEURON = 4.0
ALL_REDUCES_PER_LAYER = 2  # after attention and after the MLP (Shoeybi et al. 2019, fig. 3)
# Experts that multiply in fp8 or fp4 receive their tokens in fp8: quantised (1 x 128 tiles, one fp32 scale each)
# before the dispatch, and combined back in bf16 (DeepSeek-V3 technical report sec. 3.3.2; DeepEP's "FP8 dispatching
# and BF16 combining"): 1 + 4/128 bytes per element out, 2 back.
FP8_DISPATCH_BYTES = 1.0 + 4.0 / 128
# Memory-bound kernels of one layer, per token (the step model's ``perf.compute.elementwise_bytes`` counts, as an
# inference engine fuses them): two fused residual-add + RMSNorm kernels, each reading the sublayer's output and the
# residual and writing the new residual and the normed input (4 x h x 2 bytes; TensorRT-LLM's and vLLM's fused
# add-norm), run on every tensor-parallel rank for all its tokens; rotary embedding of queries and keys (read and
# write); the activation function on the up-projections' outputs (gated: read 2f, write f; plain: read and write f),
# split over the ranks. 8-bit input casts are fused into the norm and activation kernels, so they move nothing more.
NORM_BYTES_PER_HIDDEN = 2 * 4 * ACTIVATION_BYTES
# A MoE layer's combine, per routed token copy and hidden unit: the expert's 16-bit output row written, then read
# back by the weighted sum over the token's top-k rows. vLLM's fused MoE writes its experts' outputs as a (tokens,
# top_k, hidden) tensor that moe_sum reduces (vllm/model_executor/layers/fused_moe/fused_moe.py, intermediate_cache3);
# TensorRT-LLM's finalizeMoeRoutingKernel reads the expanded rows to un-permute and sum them
# (cpp/tensorrt_llm/kernels/mixtureOfExperts/moe_kernels.cu).
COMBINE_BYTES_PER_COPY = 2 * ACTIVATION_BYTES
# Share of device memory the engine may use for weights + KV cache: vLLM's default gpu_memory_utilization.
MEMORY_UTILIZATION = 0.9
# Neuron's runtimes have no such fraction: NxD Inference and transformers-neuronx size the KV cache from the
# configured batch and sequence length, and the runtime keeps the rest of the HBM for each NeuronCore's programs
# (code, DMA rings: ~0.1 GB a core) and scratchpad, allocated in pages of 512 MB by default (aws-neuron-sdk
# neuron-runtime/explore/device-memory.rst). The allowance here, 1 GiB a logical core (the code and rings and one
# page, rounded up), is not a measurement; it is bounded by NxD Inference's DeepSeek-V3 port, which runs bf16 at
# tp 64 on one trn2.48xlarge with 86.6 GiB of weights on each 96 GiB chip (0.90 of its HBM, beyond vLLM's fraction).
NEURON_RESERVE_BYTES_PER_CORE = float(2**30)


def usable_memory_bytes(accelerator: Accelerator) -> float:
    """Device memory an engine may fill with weights and KV cache: ``MEMORY_UTILIZATION`` of a GPU's (or TPU's),
    a Neuron device's less ``NEURON_RESERVE_BYTES_PER_CORE`` for each of its logical cores."""
    if accelerator.vendor is Vendor.AWS:
        return accelerator.hbm_bytes - accelerator.num_logical_cores * NEURON_RESERVE_BYTES_PER_CORE
    return accelerator.hbm_bytes * MEMORY_UTILIZATION


# An unfused attention kernel writes each score and reads it back around the softmax, which runs in fp32:
# 4 B written by QK^T + 4 B read by the softmax + 2 B of probabilities written + 2 B read by PV = 12 B per score
# (per head and layer; Korthikanti et al. 2022 sec. 4 count the same tensors for training, in 16 bits).
UNFUSED_SCORE_BYTES = 12.0
# NVFP4 stores 4-bit values with one FP8 scale per 16 (NVIDIA, "Introducing NVFP4", 2025): 0.5 + 1/16 bytes.
FP4_BYTES_PER_WEIGHT = 0.5 + 1.0 / 16
# MXFP4 stores 4-bit E2M1 values with one 8-bit E8M0 scale per block of 32 (OCP Microscaling Formats v1.0, 2023,
# sec. 5): 0.5 + 1/32 bytes. gpt-oss ships its MoE expert weights so, the rest in bf16 (OpenAI gpt-oss model card).
MXFP4_BYTES_PER_WEIGHT = 0.5 + 1.0 / 32
# AWQ and GPTQ store 4-bit weights in groups of 128 with a 16-bit scale and a 4-bit zero point per group (Lin et al.
# 2023, AWQ sec. 4 "group size 128"; Frantar et al. 2022, GPTQ): 0.5 + (2 + 0.5)/128 bytes. Engines dequantise
# them to 16 bits inside the GEMM (W4A16: Marlin, AWQ kernels), so they multiply at the bf16 rate.
INT4_GROUP = 128
INT4_BYTES_PER_WEIGHT = 0.5 + (2.0 + 0.5) / INT4_GROUP
# An engine that does not replay a CUDA graph launches every kernel from the host: a few microseconds each (CUDA C
# Best Practices Guide, "kernel launch overhead": a few microseconds) for about a dozen kernels per
# layer (norm, QKV GEMM, rotary, attention, output GEMM, all-reduce, residual, norm, gate/up GEMM, activation,
# down GEMM, all-reduce). Engines that capture their decode step in a graph pay this once, inside the fitted
# per-iteration overhead.
KERNEL_LAUNCH_S = 4e-6
# A replica's batch cap when none is given (one engine; a data-parallel attention group is an engine of its own)
DEFAULT_MAX_BATCH = 1024
KERNELS_PER_LAYER = 12


class AttentionKernels(enum.StrEnum):
    """Which attention kernels an engine runs; the KV and score traffic follow from the kernel, not from a fit.

    - ``fused``: FlashAttention-style prefill (scores stay on chip, Dao et al. 2022) and a decode kernel that reads
      each KV head once for all query heads of its group (FlashAttention/FlashInfer decode, TensorRT-LLM XQA from
      v0.7, vLLM V1, SGLang, NxD Inference): today's engines.
    - ``per-head-decode``: fused prefill, but a decode kernel with one query head per thread block, so a KV head is
      read once per query head of its group (TensorRT-LLM's masked multi-head attention before XQA, v0.5-0.6;
      vLLM's V0 paged attention).
    - ``unfused``: prefill scores written to HBM and read back around the softmax (``UNFUSED_SCORE_BYTES``), and a
      per-head decode (transformers-neuronx on Trn1/Inf2, SDK 2.18, before its flash attention kernel).
    """

    FUSED = "fused"
    PER_HEAD_DECODE = "per-head-decode"
    UNFUSED = "unfused"

    @classmethod
    def parse(cls, text: str) -> AttentionKernels:
        try:
            return cls(text.strip().lower())
        except ValueError:
            raise field_error("attention", text, f"allowed: {', '.join(k.value for k in cls)}") from None

    @property
    def shares_kv(self) -> bool:
        return self is AttentionKernels.FUSED

    @property
    def score_bytes(self) -> float:
        return UNFUSED_SCORE_BYTES if self is AttentionKernels.UNFUSED else 0.0


class WeightFormat(enum.StrEnum):
    """How weights are stored and multiplied.

    - ``bf16``/``fp16``/``fp8``/``fp4``: weights stored and multiplied in that format (fp8 and fp4 keep an fp8 KV
      cache, TensorRT-LLM's default with them);
    - ``int8``: int8 weights and int8 matmuls (W8A8, SmoothQuant; Xiao et al. 2023), at the chip's int8 rate, with a
      16-bit KV cache;
    - ``int8-weights``/``int4-weights``: weight-only quantisation (W8A16, W4A16 as AWQ/GPTQ store it), dequantised
      in the GEMM and multiplied in bf16;
    - ``mxfp4-experts``: a MoE model's routed experts in MXFP4 and everything else in bf16 (gpt-oss); the experts
      multiply in fp4 on chips with fp4 matmuls (Blackwell, Trainium3) and in bf16 elsewhere.
    """

    BF16 = "bf16"
    FP16 = "fp16"
    FP8 = "fp8"
    FP4 = "fp4"  # NVFP4/MXFP4 weights and matmuls (Blackwell, Trainium3), FP8 KV cache
    INT8 = "int8"  # W8A8: int8 weights and matmuls (the shared schema's precision "int8")
    INT8_WEIGHTS = "int8-weights"
    INT4_WEIGHTS = "int4-weights"
    MXFP4_EXPERTS = "mxfp4-experts"

    @classmethod
    def parse(cls, text: str) -> WeightFormat:
        key = text.strip().lower()
        try:
            return cls(WEIGHT_FORMAT_ALIASES.get(key, key))
        except ValueError:
            allowed = ", ".join(f.value for f in cls)
            raise field_error("precision", text, f"allowed: {allowed} (or awq, gptq, w4a16, w8a16, mxfp4)") from None

    @property
    def weight_bytes(self) -> float:
        """Bytes per weight of everything but a MoE model's routed experts."""
        return {
            WeightFormat.FP8: 1.0,
            WeightFormat.INT8: 1.0,
            WeightFormat.INT8_WEIGHTS: 1.0,
            WeightFormat.FP4: FP4_BYTES_PER_WEIGHT,
            WeightFormat.INT4_WEIGHTS: INT4_BYTES_PER_WEIGHT,
        }.get(self, 2.0)

    @property
    def expert_bytes(self) -> float:
        """Bytes per weight of a MoE model's routed experts."""
        return MXFP4_BYTES_PER_WEIGHT if self is WeightFormat.MXFP4_EXPERTS else self.weight_bytes

    @property
    def matmul(self) -> Precision:
        """The precision the (non-expert) GEMMs multiply in."""
        formats = {
            WeightFormat.FP8: Precision.FP8, WeightFormat.FP16: Precision.FP16, WeightFormat.FP4: Precision.FP4,
            WeightFormat.INT8: Precision.INT8,
        }  # fmt: skip
        return formats.get(self, Precision.BF16)

    def expert_matmul(self, accelerator: Accelerator) -> Precision:
        """The precision the routed experts multiply in on ``accelerator``."""
        if self is WeightFormat.MXFP4_EXPERTS and accelerator.supports(Precision.FP4):
            return Precision.FP4
        return self.matmul

    @property
    def kv(self) -> Precision:
        """Default KV-cache format: fp8 with fp8 or fp4 weights (TensorRT-LLM's fp8 KV cache), else 16-bit."""
        return Precision.FP8 if self in (WeightFormat.FP8, WeightFormat.FP4) else Precision.BF16


# The engines' and frameworks' spellings of the 16- and 8-bit formats (vLLM's --kv-cache-dtype fp8_e4m3, PyTorch's
# bfloat16), for weights and KV caches alike.
DTYPE_SPELLINGS = {"fp8_e4m3": "fp8", "fp8_e5m2": "fp8", "float16": "fp16", "bfloat16": "bf16"}
WEIGHT_FORMAT_ALIASES = {
    "awq": "int4-weights",
    "gptq": "int4-weights",
    "w4a16": "int4-weights",
    "int4": "int4-weights",
    "w8a16": "int8-weights",
    "mxfp4": "mxfp4-experts",
    "int4-awq": "int4-weights",
    "w8a8": "int8",
    "smoothquant": "int8",
    "nvfp4": "fp4",
    **DTYPE_SPELLINGS,
}
KV_PRECISIONS = (Precision.BF16, Precision.FP16, Precision.FP8)


def parse_kv_precision(text: str | None) -> Precision | None:
    """``--kv-precision``: bf16, fp16 or fp8 (``None`` or ``auto``: the weight format's default)."""
    if text is None or text.strip().lower() in ("", "auto"):
        return None
    key = text.strip().lower()
    key = DTYPE_SPELLINGS.get(key, key)
    for p in KV_PRECISIONS:
        if p.value == key:
            return p
    raise field_error("kv-precision", text, f"auto, {', '.join(p.value for p in KV_PRECISIONS)}")


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplicaCost:
    """Per-iteration cost coefficients of one replica (satisfies ``serve.simulate.IterationCost``)."""

    model: str
    num_layers: int
    replica_devices: int  # devices of one replica (tp x pp ranks / ranks per device)
    tp_devices: float  # devices sharing one layer's work
    gemm_flop_per_token: float  # weight GEMM FLOPs per token over all layers (LM head and routed experts separate)
    # LM-head FLOPs per token, in units of the GEMM rate: the 16-bit head's FLOPs x peak(GEMM precision) /
    # peak(16-bit), so that a quantised model's head costs its 16-bit time at ``flop_per_s``
    head_flop_per_token: float
    attention_flop_per_context_token: float  # QK^T + AV FLOPs per (query, key) pair, all layers
    dense_weight_bytes: float  # whole model, weights every token reads
    expert_weight_bytes: float  # whole model, all routed experts
    num_experts: int
    top_k: int
    kv_bytes_per_token_replica: float  # KV bytes per context token over the replica
    kv_capacity: int  # KV tokens that fit
    weight_bytes_per_device: float
    flop_per_s: float  # per device, at the matmul precision
    hbm_bytes_per_s: float  # per device
    all_reduce: EngineAllReduce  # one all-reduce's seconds by its bytes, on the placed tp group (serve.allreduce)
    eff: ServeEfficiency
    engine_max_batch: int = DEFAULT_MAX_BATCH

    # -- IterationCost protocol ------------------------------------------------------------------------
    @property
    def kv_capacity_tokens(self) -> int:
        return self.kv_capacity

    @property
    def kv_bytes_per_token(self) -> float:
        return self.kv_bytes_per_token_replica

    @property
    def max_batch(self) -> int:
        return self.engine_max_batch

    @property
    def request_overhead_s(self) -> float:
        """Host time per running request per step: ``sequence_overhead_s``, or 0 for an engine without per-request
        host work (``per_request_host_work``)."""
        return self.eff.sequence_overhead_s if self.per_request_host_work else 0.0

    def iteration_s(
        self, prefill_tokens: int, decode_seqs: int, kv_tokens: int, prefill_seqs: int = 1, cached_tokens: int = 0
    ) -> float:
        """One forward pass: ``prefill_tokens`` new tokens of ``prefill_seqs`` prompts, one token for each of
        ``decode_seqs`` sequences whose caches hold ``kv_tokens``; the prompts find ``cached_tokens`` of their
        context already in the cache (a prefix-cache hit, or their earlier chunks) and attend to them."""
        parts = self.parts(prefill_tokens, decode_seqs, kv_tokens, prefill_seqs, cached_tokens=cached_tokens)
        return sum(parts.values())

    def iteration_function(self) -> Callable[[int, int, int, int, int], float]:
        """:meth:`iteration_s` as a function of ``(prefill_tokens, decode_seqs, kv_tokens, prefill_seqs,
        cached_tokens)`` closed over this cost's constants: the arithmetic of :meth:`parts`, operation for operation
        and in the same order (so the same bits), without reading some forty fields and building a dict at every
        iteration. The simulator's engines call it once per iteration (a fit simulates millions of them)."""
        eff = self.eff
        dp = self.dp_attention
        flop_rate = self.flop_per_s * self.tp_devices * eff.compute
        byte_rate = self.hbm_bytes_per_s * self.tp_devices * eff.memory
        pad = self.tile_tokens
        gemm_per_token, head_per_token = self.gemm_flop_per_token, self.head_flop_per_token
        num_experts, top_k = self.num_experts, self.top_k
        untouched = 1.0 - top_k / num_experts if num_experts > 1 else 1.0
        expert_rate = (self.expert_flop_per_s or self.flop_per_s) * self.tp_devices * dp * eff.compute
        expert_per_token = self.expert_flop_per_token
        extreme, load_cv2, per_rank = self.expert_load_extreme, self.expert_load_cv2, self.experts_per_rank
        dense_bytes, expert_bytes = self.dense_weight_bytes, self.expert_weight_bytes
        elementwise = self.elementwise_bytes_per_token
        prefill_flop = self.attention_flop_per_context_token
        decode_flop = self.decode_attention_flop_per_context_token or self.attention_flop_per_context_token
        kv_per_token, kv_reads = self.kv_bytes_per_token_replica, self.kv_reads_per_head
        scores, score_bytes_each = self.scores_per_pair, self.score_bytes
        kv_rate = self.hbm_bytes_per_s * self.tp_devices * eff.kv_memory
        attention_rate = (self.attention_flop_per_s or self.flop_per_s) * self.tp_devices * eff.compute
        all_reduce_s = self.all_reduce.seconds
        hidden_bytes = self.hidden_bytes_per_token
        all_reduces = self.num_layers * ALL_REDUCES_PER_LAYER - (self.moe_layers if self.ep > 1 else 0)
        call_latency = eff.collective_latency_s
        tensor_parallel = self.tp_devices > 1
        ep, moe_layers = self.ep, self.moe_layers
        a2a_slope, a2a_intercept = self.all_to_all
        a2a_prefill_slope = a2a_slope
        if ep > 1 and self.ep_nodes > 1:
            a2a_prefill_slope = a2a_slope - self.all_to_all_network * (1.0 - node_copies_share(self.ep_nodes, top_k))
        dispatch_bytes = self.dispatch_bytes_per_token or hidden_bytes
        fixed_a2a = a2a_intercept + eff.collective_latency_s
        overhead = eff.iteration_overhead_s + self.launch_s
        per_request = self.request_overhead_s
        overlapped = self.two_batch_overlap and ep > 1
        iteration_s = self.iteration_s
        # without routed experts their FLOPs and bytes are exactly zero: left out (adding zeros changes no bits)
        routed = num_experts > 1 or expert_per_token != 0.0 or expert_bytes != 0.0
        dense_weight_time = dense_bytes / byte_rate
        window, window_share = self.window, self.window_share

        def duration(prefill_tokens: int, decode_seqs: int, kv_tokens: int, prefill_seqs: int, cached: int) -> float:
            tokens = prefill_tokens + decode_seqs
            if overlapped and tokens >= 2:
                return iteration_s(prefill_tokens, decode_seqs, kv_tokens, prefill_seqs, cached)
            share = 1.0 if dp == 1 else busiest_share(prefill_seqs, dp)  # the common case without a call
            rank_tokens = prefill_tokens * share + decode_seqs / dp
            rank_heads = (prefill_seqs * share if prefill_tokens else 0) + decode_seqs / dp
            gemm_flop = (rank_tokens + pad) * gemm_per_token + (rank_heads + pad) * head_per_token
            copies = rank_tokens * top_k * dp / ep
            load = busiest_load(copies, extreme, load_cv2, ep) if extreme else 1.0  # 1.0 exactly without ep
            if routed:
                touched = 1.0 - untouched**tokens if num_experts > 1 and tokens > 0 else 1.0
                expert_tokens = tokens + num_experts * touched * pad / top_k
                compute = gemm_flop / flop_rate + load * expert_tokens * expert_per_token / expert_rate
                read = busiest_touched(touched, extreme, per_rank) if extreme else touched
                weight_time = (dense_bytes + expert_bytes * read / dp) / byte_rate
            else:
                compute, weight_time = gemm_flop / flop_rate, dense_weight_time
            gemm = math.hypot(compute, weight_time) if tokens else 0.0  # the soft roofline (module docstring)
            gemm += rank_tokens * elementwise / byte_rate
            attended: float = kv_tokens
            cached_read: float = cached
            if prefill_tokens:  # a decode-only iteration's prompt pairs are exactly zero
                prompts = max(prefill_seqs, 1)
                prompt_pairs = prefill_tokens**2 / (2 * prompts) + prefill_tokens * cached / prompts
                if window:
                    prompt_pairs, attended, cached_read = windowed_attention(
                        window, window_share, prompt_pairs, prefill_tokens, cached, prompts, kv_tokens, decode_seqs
                    )
                decode_pairs = attended / dp
                prefill_pairs = prompt_pairs * share
                pairs = prefill_pairs + decode_pairs
                attention_flop = prefill_pairs * prefill_flop + decode_pairs * decode_flop
            else:
                if window:
                    _, attended, _ = windowed_attention(window, window_share, 0.0, 0, cached, 1, kv_tokens, decode_seqs)
                decode_pairs = attended / dp
                pairs, attention_flop = decode_pairs, decode_pairs * decode_flop
            by_flop = attention_flop / attention_rate
            kv_read = (attended + decode_seqs) / dp + (cached_read + prefill_tokens) * share
            kv_bytes = kv_read * kv_per_token * kv_reads
            by_bytes = kv_bytes / kv_rate + pairs * scores * score_bytes_each / byte_rate
            total = gemm + math.hypot(by_flop, by_bytes)
            if tensor_parallel:
                total += all_reduces * (all_reduce_s(rank_tokens * hidden_bytes) + call_latency)
            if ep > 1 and tokens:
                routed_bytes = load * copies * dispatch_bytes + load * copies * hidden_bytes
                exchange = a2a_prefill_slope if prefill_tokens else a2a_slope
                total += moe_layers * (exchange * routed_bytes + 2 * fixed_a2a)
            requests = (prefill_seqs * share if prefill_tokens else 0) + decode_seqs / dp
            return total + (overhead + per_request * requests)

        return duration

    def tp_all_reduce(self, prefill_tokens: int, decode_seqs: int, prefill_seqs: int = 1) -> dict[str, Any] | None:
        """The tensor-parallel all-reduce of such an iteration: its bytes per call (the busiest group's tokens) and
        the algorithm the engine runs for them (``serve.allreduce``); None for a replica without one."""
        if self.tp_devices <= 1:
            return None
        share = busiest_share(prefill_seqs, self.dp_attention)
        nbytes = (prefill_tokens * share + decode_seqs / self.dp_attention) * self.hidden_bytes_per_token
        return {"bytes": nbytes, "algorithm": self.all_reduce.algorithm(nbytes)}

    def pass_s(self, decode_seqs: int, kv_tokens: int, queries: int = 1) -> float:
        """A decode pass of ``queries`` tokens per sequence (speculative verification, or one drafter step)
        without the per-iteration overhead, which the step it belongs to pays once."""
        parts = self.parts(0, decode_seqs, kv_tokens, queries=queries)
        return sum(parts.values()) - parts["overhead"]

    def parts(
        self,
        prefill_tokens: int,
        decode_seqs: int,
        kv_tokens: int,
        prefill_seqs: int = 1,
        queries: int = 1,
        cached_tokens: int = 0,
    ) -> dict[str, float]:
        """The iteration's time by part (GEMMs, attention, collectives, overheads), seconds; each decoding
        sequence brings ``queries`` tokens (1, or k + 1 when verifying k speculative tokens), and the prompts'
        new tokens attend to ``cached_tokens`` already cached (spread evenly over the ``prefill_seqs`` prompts)."""
        if self.two_batch_overlap and self.ep > 1 and prefill_tokens + decode_seqs * queries >= 2:
            return self._overlapped_parts(prefill_tokens, decode_seqs, kv_tokens, prefill_seqs, queries, cached_tokens)
        tokens = prefill_tokens + decode_seqs * queries
        eff = self.eff
        # Data-parallel attention: each group does its share of the attention and dense work on its tp ranks, while
        # the routed experts' work and weights are spread over all dp x tp ranks (dp = 1: one group, the whole
        # replica). The groups wait for each other, so the busiest one's share counts: an even 1/dp of the decodes,
        # and the whole prompts sent to it (``busiest_share``).
        dp = self.dp_attention
        share = busiest_share(prefill_seqs, dp)
        flop_rate = self.flop_per_s * self.tp_devices * eff.compute
        byte_rate = self.hbm_bytes_per_s * self.tp_devices * eff.memory
        rank_tokens = prefill_tokens * share + decode_seqs * queries / dp
        rank_heads = (prefill_seqs * share if prefill_tokens else 0) + decode_seqs * queries / dp
        # every weight GEMM computes whole output tiles: half a tile of padded rows on average (``tile_tokens``)
        pad = self.tile_tokens
        gemm_flop = (rank_tokens + pad) * self.gemm_flop_per_token + (rank_heads + pad) * self.head_flop_per_token
        touched = 1.0
        if self.num_experts > 1 and tokens > 0:
            touched = 1.0 - (1.0 - self.top_k / self.num_experts) ** tokens
        # each routed expert a token reaches pads its own rows (a grouped GEMM tiles every expert apart)
        expert_tokens = tokens + self.num_experts * touched * pad / self.top_k
        expert_rate = (self.expert_flop_per_s or self.flop_per_s) * self.tp_devices * dp * eff.compute
        # under expert parallelism the busiest rank's routed copies (serve.expert_load) set the experts' GEMM time
        # and the all-to-all's: routed token copies each rank sends and gets back, on average
        copies = rank_tokens * self.top_k * dp / self.ep
        load = busiest_load(copies, self.expert_load_extreme, self.expert_load_cv2, self.ep)
        gemm_compute = gemm_flop / flop_rate + load * expert_tokens * self.expert_flop_per_token / expert_rate
        # each rank reads its touched experts' weights, and the step waits for the rank that touched most
        read = busiest_touched(touched, self.expert_load_extreme, self.experts_per_rank)
        weight_bytes = self.dense_weight_bytes + self.expert_weight_bytes * read / dp  # per group's tp ranks
        gemm = math.hypot(gemm_compute, weight_bytes / byte_rate) if tokens else 0.0
        gemm += rank_tokens * self.elementwise_bytes_per_token / byte_rate
        # prompts attend causally to themselves (P^2 / (2 x prompts) pairs) and to their cached context; decode
        # tokens to their caches
        prompts = max(prefill_seqs, 1)
        prompt_pairs = prefill_tokens**2 / (2 * prompts) + prefill_tokens * cached_tokens / prompts
        attended: float = kv_tokens
        cached_read: float = cached_tokens
        if self.window:  # sliding-window layers attend to (and read) the last window keys only
            prompt_pairs, attended, cached_read = windowed_attention(
                self.window, self.window_share, prompt_pairs, prefill_tokens, cached_tokens, prompts, kv_tokens,
                decode_seqs,
            )  # fmt: skip
        prefill_pairs = prompt_pairs * share
        decode_pairs = attended * queries / dp  # each group attends over its own sequences only
        pairs = prefill_pairs + decode_pairs
        attention_flop = prefill_pairs * self.attention_flop_per_context_token + decode_pairs * (
            self.decode_attention_flop_per_context_token or self.attention_flop_per_context_token
        )
        # the busiest group's: an even share of the caches and decodes, its prompts (and their cached context) whole
        kv_read = (attended + decode_seqs * queries) / dp + (cached_read + prefill_tokens) * share
        kv_bytes = kv_read * self.kv_bytes_per_token_replica * self.kv_reads_per_head
        score_bytes = pairs * self.scores_per_pair * self.score_bytes
        kv_rate = self.hbm_bytes_per_s * self.tp_devices * eff.kv_memory
        attention_rate = (self.attention_flop_per_s or self.flop_per_s) * self.tp_devices * eff.compute
        attention = math.hypot(attention_flop / attention_rate, kv_bytes / kv_rate + score_bytes / byte_rate)
        message = rank_tokens * self.hidden_bytes_per_token  # each group's all-reduces carry its own tokens
        # one all-reduce after attention in every layer, one after the MLP -- except in MoE layers under expert
        # parallelism, whose experts exchange tokens by all-to-all instead (below); each by the algorithm the
        # engine picks for its size (serve.allreduce: links' bytes and latencies), then the call's own latency
        all_reduces = self.num_layers * ALL_REDUCES_PER_LAYER - (self.moe_layers if self.ep > 1 else 0)
        per_call = self.all_reduce.seconds(message) + eff.collective_latency_s
        comm = all_reduces * per_call if self.tp_devices > 1 else 0
        expert = 0.0
        if self.ep > 1 and tokens:
            a2a_slope, a2a_intercept = self.all_to_all
            if prefill_tokens and self.ep_nodes > 1:  # normal kernels: a token crosses to a node once (serve.dispatch)
                a2a_slope -= self.all_to_all_network * (1.0 - node_copies_share(self.ep_nodes, self.top_k))
            # the busiest rank receives its copies in the dispatch and sends them back in the combine
            routed = load * copies * (self.dispatch_bytes_per_token or self.hidden_bytes_per_token)  # dispatch
            combined = load * copies * self.hidden_bytes_per_token
            fixed_a2a = a2a_intercept + eff.collective_latency_s
            expert = self.moe_layers * (a2a_slope * (routed + combined) + 2 * fixed_a2a)
        # the engine's fixed work per step, and its host work per running request (the busiest group's: each
        # data-parallel attention group runs its own scheduler)
        requests = (prefill_seqs * share if prefill_tokens else 0) + decode_seqs / dp
        overhead = eff.iteration_overhead_s + self.launch_s + self.request_overhead_s * requests
        return {"gemm": gemm, "attention": attention, "tp_comm": comm, "ep_comm": expert, "overhead": overhead}

    hidden_bytes_per_token: float = 0.0
    tile_tokens: float = 0.0  # padded rows per weight GEMM, on average: half the accelerator's output tile
    scores_per_pair: float = 0.0  # attention scores per (query, key) pair: heads x layers
    launch_s: float = 0.0  # host time launching the iteration's kernels one by one (no CUDA graph replayed)
    # whether the engine does host work per running request each step (a serving engine's scheduler, sampling and
    # streaming: ``sequence_overhead_s``); TensorRT-LLM's gptSession before 0.7 runs a static batch as one tensor,
    # sampled on the device, with none
    per_request_host_work: bool = True
    kv_reads_per_head: float = 1.0  # times each stored KV head is read per step: 1, or its query heads per rank
    score_bytes: float = 0.0  # HBM bytes per attention score (AttentionKernels.score_bytes)
    all_to_all: tuple[float, float] = (0.0, 0.0)  # expert dispatch/combine on the ep ranks: slope x bytes + intercept
    ep: int = 1
    moe_layers: int = 0
    expert_flop_per_token: float = 0.0  # routed experts' GEMM FLOPs per token (top-k of them), all MoE layers
    expert_flop_per_s: float = 0.0  # per device, at the experts' matmul precision (0: flop_per_s)
    dp_attention: int = 1  # data-parallel attention groups of tp ranks sharing the experts (1: none)
    dispatch_bytes_per_token: float = 0.0  # bytes of one routed token copy in the dispatch (0: hidden_bytes_per_token)
    # QK^T + AV FLOPs per (decode query, key) pair, all layers (0: attention_flop_per_context_token); MLA's absorbed
    # decode attends over the latent cache (mla_decode_attention_flop)
    decode_attention_flop_per_context_token: float = 0.0
    attention_flop_per_s: float = 0.0  # per device, at the attention core's precision (0: flop_per_s)
    two_batch_overlap: bool = False  # expert all-to-all overlapped with the other micro-batch's compute
    elementwise_bytes_per_token: float = 0.0  # norms, residual adds, rotary, activations: one tp group, all layers
    all_to_all_network: float = 0.0  # the part of the all-to-all slope spent between nodes
    ep_nodes: int = 1  # nodes the ep ranks span
    pipeline_stages: int = 1  # pp: stages one iteration crosses in turn (chunked prefills pipeline through them)
    # the runtime's compiled lengths (Neuron; serve.buckets), which the simulator's engines pad to; None: real lengths
    buckets: Buckets | None = None
    window: int = 0  # the sliding-window layers' attention window, tokens (0: none)
    window_share: float = 0.0  # the share of the layers that have it
    # the busiest expert-parallel rank's routed load (serve.expert_load): the expected maximum of ep normal draws
    # (0 without expert parallelism) and the squared CV of a rank's load from its experts' popularity
    expert_load_extreme: float = 0.0
    expert_load_cv2: float = 0.0
    experts_per_rank: int = 0  # expert slots each ep rank holds (0 without expert parallelism)

    def _overlapped_parts(
        self, prefill_tokens: int, decode_seqs: int, kv_tokens: int, prefill_seqs: int, queries: int, cached: int
    ) -> dict[str, float]:
        """Two-batch overlap (SGLang ``--enable-two-batch-overlap``, LMSYS "large-scale EP" blog 2025-05-05; the
        DeepSeek-V3 report sec. 3.4 overlaps the same way): the batch runs as two micro-batches, one's dispatch and
        combine in flight while the other computes, so per layer the slower of the two streams sets the pace and the
        iteration takes ``max(compute, all-to-all)``. Each micro-batch reads the weights its GEMMs touch (the GEMMs
        of two half batches), attention and the tp all-reduces do the whole batch's work, and the all-to-all pays
        its latencies twice; ``ep_comm`` is the all-to-all time left exposed beyond the compute."""
        plain = replace(self, two_batch_overlap=False)
        whole = plain.parts(prefill_tokens, decode_seqs, kv_tokens, prefill_seqs, queries, cached)
        h: Any = 0.5  # fractional halves cost as well as whole ones
        half = plain.parts(prefill_tokens * h, decode_seqs * h, kv_tokens * h, prefill_seqs, queries, cached * h)
        gemm = 2 * half["gemm"]
        compute = gemm + whole["attention"] + whole["tp_comm"]
        exposed = max(0.0, 2 * half["ep_comm"] - compute)
        return {**whole, "gemm": gemm, "ep_comm": exposed}

    def micro_batch_groups(self) -> tuple[int, ReplicaCost]:
        """Pipeline parallelism under in-flight batching: ``pp`` groups of sequences, one per stage at a time.

        Engines keep one micro-batch per stage in flight, each a step behind the next (vLLM's ``pp`` virtual
        engines, each with its own scheduler and its own share of the KV blocks; TensorRT-LLM's micro-batches
        under pipeline parallelism; GPipe's fill, Huang et al. 2019 sec. 2.2, without the flush), so every stage
        works while a group crosses the others. One group's iteration is still the whole pass (``iteration_s``:
        every layer, stage after stage), so a sequence's TPOT is unchanged while the replica serves ``pp`` times
        the sequences. Each group keeps ``1/pp`` of the cache and at most ``max_batch`` sequences.
        """
        pp = self.pipeline_stages
        if pp <= 1:
            return 1, self
        return pp, replace(self, kv_capacity=max(self.kv_capacity // pp, 1))

    def with_efficiency(self, eff: ServeEfficiency) -> ReplicaCost:
        """The same replica under other efficiencies (the all-reduce bandwidth term scales with ``comm``)."""
        a2a_slope, a2a_intercept = self.all_to_all
        scale = self.eff.comm / eff.comm
        return replace(
            self, eff=eff, all_reduce=self.all_reduce.scaled(scale), all_to_all=(a2a_slope * scale, a2a_intercept),
            all_to_all_network=self.all_to_all_network * scale,
        )  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {
            "replica_devices": self.replica_devices,
            "dp_attention": self.dp_attention,
            "weight_bytes_per_device": self.weight_bytes_per_device,
            "kv_bytes_per_token": self.kv_bytes_per_token_replica,
            "kv_capacity_tokens": self.kv_capacity,
        }


def busiest_share(prompts: int, dp: int) -> float:
    """The share of an iteration's prompts that its busiest data-parallel attention group prefills: each prompt
    goes whole to one of the ``dp`` groups (SGLang's and TensorRT-LLM's attention-DP schedulers send a request to
    one rank), round-robin, so the busiest holds ``ceil(prompts / dp)`` of them (1 with one group)."""
    if dp == 1:
        return 1.0
    prompts = max(prompts, 1)
    return math.ceil(prompts / dp) / prompts


def check_precision(accelerator: Accelerator, weights: WeightFormat) -> None:
    """Refuse a weight format whose matmuls ``accelerator`` has no published peak for, as training does
    (``perf.step.plan_problem``): fp8 on an A100, for instance, would otherwise be costed at a rate it lacks."""
    if not accelerator.supports(weights.matmul):
        supported = ", ".join(p.value for p in accelerator.precisions)
        raise field_error(
            "precision", weights.value, f"{accelerator.id} has no {weights.matmul.value} matmuls (has {supported})"
        )


def windowed_attention(
    window: int,
    share: float,
    prompt_pairs: float,
    prefill_tokens: int,
    cached: int,
    prompts: int,
    kv_tokens: int,
    decode_seqs: int,
) -> tuple[float, float, float]:
    """An iteration's ``(prompt_pairs, decode keys, cached keys read)`` when ``share`` of the layers attend within
    a sliding ``window``: their queries reach the last ``window`` keys only, the rest of the layers the whole
    context. The prompts' tokens and cached context are spread evenly over ``prompts``, the decodes' cache over
    ``decode_seqs`` sequences (each at the mean context)."""
    full = 1.0 - share
    pairs = prompt_pairs
    cached_read = float(cached)
    if prefill_tokens:
        start, length = cached / prompts, prefill_tokens / prompts
        pairs = full * prompt_pairs + share * prompts * window_keys(start, length, window)
        cached_read = full * cached + share * prompts * min(start, window)
    attended = float(kv_tokens)
    if decode_seqs:
        attended = full * kv_tokens + share * decode_seqs * min(kv_tokens / decode_seqs, window)
    return pairs, attended, cached_read


def _placed_all_reduce(cluster: Cluster, cores: int, degree: int, comm: float) -> EngineAllReduce:
    """The all-reduce of a tensor-parallel group of ``degree`` consecutive ranks on ``cluster``, links at ``comm``:
    the collective library's coefficients (``perf.comm``), and the engine's own kernels where it runs them."""
    levels = concurrent_torus_axes(placed_levels(cluster, cores, "tp", degree, comm))
    library: GroupCost = group_cost(levels)
    devices = max(degree // cores, 1)
    return engine_all_reduce(cluster, levels, library.all_reduce, devices)


def ranks_per_device(cluster: Cluster, unit_core: bool) -> int:
    return cluster.accelerator.num_logical_cores if unit_core else 1


def replica_cost(
    shape: TransformerShape,
    cluster: Cluster,
    *,
    tp: int,
    pp: int = 1,
    unit_core: bool = False,
    weights: WeightFormat = WeightFormat.BF16,
    eff: ServeEfficiency,
    max_batch: int = DEFAULT_MAX_BATCH,
    ep: int = 1,
    attention: AttentionKernels = AttentionKernels.FUSED,
    cuda_graphs: bool = True,
    per_request_host_work: bool = True,
    kv_precision: Precision | None = None,
    dp_attention: int = 1,
    two_batch_overlap: bool = False,
    latent_precision: Precision | None = None,
    eplb: bool = False,
) -> ReplicaCost:
    """The cost coefficients of one ``tp x pp`` (``tp x dp_attention x pp``) replica of ``shape`` on ``cluster``.

    With ``ep > 1`` a MoE model's experts are spread over ``ep`` of the tensor-parallel ranks: every MoE layer
    exchanges each token's ``top_k`` hidden vectors by a dispatch and a combine all-to-all (DeepSpeed-MoE /
    Megatron expert parallelism; vLLM ``--enable-expert-parallel``) in place of the MLP's tensor-parallel
    all-reduce; attention keeps its all-reduce. ``kv_precision`` stores the KV cache in another format than the
    weight format's default (vLLM ``--kv-cache-dtype fp8`` with 16-bit weights, for instance).

    With ``dp_attention > 1`` (data-parallel attention, module docstring) the experts are spread over all
    ``ep = tp x dp_attention`` ranks, and the attention, dense layers and LM head are replicated per group.
    ``two_batch_overlap`` hides the expert all-to-all behind the other micro-batch's compute (``ReplicaCost``).
    ``latent_precision`` is what an fp4 MLA checkpoint keeps its latent projections in (``mla_latent_params``):
    None, 16 bits as NVIDIA's NVFP4 checkpoints do; fp8 for a checkpoint with FP8 attention weights.
    ``eplb``: the engine places (and replicates) experts by their measured load (EPLB), so the busiest
    expert-parallel rank sits only a placement residual above the mean (``serve.expert_load``); an expert count
    that ``ep`` does not divide implies it (the spare slots hold copies of hot experts).
    """
    for name, value in (("tp", tp), ("pp", pp), ("ep", ep), ("dp_attention", dp_attention)):
        check_int(name, value, 1, MAX_DEGREE, "ranks")
    check_int("max_batch", max_batch, 1, MAX_BATCH, "sequences")
    check_dp_attention(shape, tp=tp, ep=ep, dp_attention=dp_attention)
    cores = ranks_per_device(cluster, unit_core)
    ranks = tp * dp_attention * pp
    if ranks % cores:
        raise field_error("tp", tp, f"tp x pp in NeuronCores must fill whole devices of {cores} cores")
    devices = ranks // cores
    if devices > cluster.num_devices:
        name, value = ("pp", pp) if pp > 1 else ("dp_attention", dp_attention) if dp_attention > 1 else ("tp", tp)
        layout = "tp x dp_attention x pp" if dp_attention > 1 else "tp x pp"
        allowed = f"{layout} = {ranks:,} ranks: a replica of at most {cluster.num_devices:,} devices ({cluster.id})"
        raise field_error(name, value, allowed)
    # Heads that tp does not divide are padded to the next multiple (transformers-neuronx pads, e.g. 40 -> 64 at
    # tp=32); the padded heads cost attention time, KV cache and projection weights like real ones.
    head_padding = 1.0 if tp % shape.num_heads == 0 else math.ceil(shape.num_heads / tp) * tp / shape.num_heads
    # KV heads that tp neither divides nor is divided by are padded the same way (their cache and projections)
    kv_padding = 1.0
    if shape.num_kv_heads % tp and tp % shape.num_kv_heads:
        kv_padding = math.ceil(shape.num_kv_heads / tp) * tp / shape.num_kv_heads
    if ep > 1 and dp_attention == 1 and (shape.moe is None or tp % ep or shape.moe.num_experts % ep):
        raise field_error("ep", ep, "a divisor of tp and of the expert count, for a MoE model (1 otherwise)")
    accelerator = cluster.accelerator
    check_precision(accelerator, weights)
    if weights is WeightFormat.MXFP4_EXPERTS and shape.moe is None:
        raise field_error("precision", weights.value, "a MoE model (its routed experts hold the MXFP4 weights)")
    kv_format = weights.kv if kv_precision is None else kv_precision
    matmul = weights.matmul
    counts = count_params(shape)
    per_token = flops_per_token(shape, 1)
    head = FLOP_PER_MAC * shape.vocab_size * shape.hidden_dim
    # The LM head (an untied one, or the tied embedding table it reads) stays in 16 bits under every quantisation
    # recipe, and multiplies at the 16-bit rate; an untied input embedding is stored but only its looked-up rows are
    # read (``_unquantised_params``).
    head_params, unread_params = _unquantised_params(counts)
    head_precision = _head_precision(accelerator, matmul)
    expert_params = 0
    expert_flop = 0.0
    num_experts = top_k = 1
    if shape.moe is not None and counts.moe_layer is not None:
        moe = shape.moe
        num_experts, top_k = moe.num_experts, moe.top_k
        per_expert = shape.mlp_activation.num_matrices * shape.hidden_dim * moe.expert_ffn_hidden_dim
        expert_params = per_expert * num_experts * shape.num_moe_layers
        expert_flop = FLOP_PER_MAC * per_expert * top_k * shape.num_moe_layers
    expert_bytes = expert_params * weights.expert_bytes
    slots = math.ceil(num_experts / ep) * ep
    if slots != num_experts:
        # An expert count that ep does not divide leaves ceil(E/ep) expert slots per rank, the spare ones filled by
        # redundant copies of hot experts (DeepSeek-V3 report sec. 3.4, EPLB: 256 experts in 288 slots on 72 GPUs);
        # every slot is stored and read like an expert.
        expert_bytes *= slots / num_experts
    balanced = eplb or slots != num_experts
    # An NVFP4 checkpoint of an MLA model keeps the latent projections (workload.params.mla_latent_params) in 16 bits,
    # with the router and the LM head: NVIDIA's NVFP4 DeepSeek-R1 lists every layer's self_attn.fused_a (q_a + kv_a),
    # q_proj, q_b_proj, kv_b_proj and mlp.gate in exclude_modules, o_proj and the experts being NVFP4 (ModelOpt 0.23
    # hf_quant_config.json, mlcommons/inference_results_v5.1 closed/NVIDIA/code/deepseek-r1/tensorrt; TensorRT-LLM
    # tech blog 1's precision table: attention modules BF16, MoE and dense FFN layers NVFP4). They multiply at the
    # 16-bit rate: their FLOPs count in the GEMMs' time units scaled by peak(fp4) / peak(16-bit).
    latent_params = shape.num_layers * mla_latent_params(shape) if weights is WeightFormat.FP4 else 0
    latent_format = head_precision if latent_precision is None else latent_precision
    if latent_params and latent_format not in (Precision.BF16, Precision.FP16, Precision.FP8):
        raise field_error("latent_precision", latent_format.value, "bf16, fp16 or fp8")
    latent_rate = accelerator.peak_flop_per_s(matmul) / accelerator.peak_flop_per_s(latent_format)
    latent_extra_flop = FLOP_PER_MAC * latent_params * (latent_rate - 1.0)
    latent_bytes = 1.0 if latent_format is Precision.FP8 else TABLE_BYTES
    # The MoE router (hidden x experts per MoE layer, ``ParamCounts.router``) is neither quantised nor split over
    # the tensor-parallel ranks: every rank holds the whole gate, reads it each pass and scores every token itself
    # (vLLM builds Mixtral's and DeepSeek's gate as ReplicatedLinear with quant_config=None, SGLang's MoEGate is a
    # plain parameter, NVIDIA's NVFP4 DeepSeek-R1 lists mlp.gate in exclude_modules, NxD's RouterTopK is a plain
    # nn.Linear in fp32, ``ROUTER_BYTES_NEURON``). The tp - 1 extra copies are stored, read and multiplied like
    # the MLA down-projections below (their FLOPs are a few per million of a token's).
    router_bytes = ROUTER_BYTES_NEURON if accelerator.vendor is Vendor.AWS else TABLE_BYTES
    router_copies = counts.router * (tp - 1)
    quantised_params = counts.total - expert_params - head_params - unread_params - latent_params - counts.router
    kept_bytes = head_params * TABLE_BYTES + latent_params * latent_bytes + counts.router * router_bytes * tp
    # MLA's down-projections (W_DQ, W_DKV with the rotary key) are not split over the attention's tensor-parallel
    # ranks: every rank holds the whole matrices, reads them each pass and multiplies the full latents itself (vLLM
    # and SGLang build q_a_proj and kv_a_proj_with_mqa as ReplicatedLinear, NxD Inference's DeepSeek-V3 port as
    # plain nn.Linear; only the up-projections and o_proj are column- and row-parallel). The tp - 1 extra copies
    # are counted as stored and read weights and as GEMM FLOPs at the latents' rate.
    down_params = shape.num_layers * mla_down_params(shape) * (tp - 1)
    down_bytes = latent_bytes if latent_params else weights.weight_bytes
    down_flop = FLOP_PER_MAC * down_params * (latent_rate if latent_params else 1.0)
    # With more tensor-parallel ranks than KV heads, the KV heads are copied, not split: each rank holds a whole
    # head's K and V projections (vLLM QKVParallelLinear, num_kv_head_replicas = tp / kv_heads; NxD Inference's
    # GQA.REPLICATE_TO_TP_DEGREE), as it holds that head's cache. The tp / kv_heads - 1 extra copies of every
    # K/V projection are stored, read each pass and multiplied, like the down-projections above.
    kv_copies = 0
    if shape.mla is None and tp > shape.num_kv_heads and tp % shape.num_kv_heads == 0:
        kv_copies = tp // shape.num_kv_heads - 1
    # Heads that tp does not divide are padded (above): the padded heads' Q and O columns, and K and V where the KV
    # heads are padded too, are stored, read and multiplied like real ones (transformers-neuronx pads the weights).
    # Both count as head projections held beyond one split copy.
    per_head = 2 * shape.num_layers * shape.hidden_dim * shape.head_dim  # one head's pair of projections
    extra_heads = float(kv_copies * shape.num_kv_heads)
    if head_padding > 1.0 and shape.mla is None:
        extra_heads += (head_padding - 1.0) * shape.num_heads + (kv_padding - 1.0) * shape.num_kv_heads
    extra_head_params = round(per_head * extra_heads)
    read_weight_bytes = quantised_params * weights.weight_bytes + kept_bytes + expert_bytes + down_params * down_bytes
    read_weight_bytes += extra_head_params * weights.weight_bytes
    total_weight_bytes = read_weight_bytes + unread_params * TABLE_BYTES
    kv_rank = kv_cache_bytes_per_token(shape, precision=kv_format, tp_degree=tp)
    kv_replica = kv_rank * tp  # bytes per context token over the replica (replicated KV heads counted)
    if kv_padding > 1.0:
        kv_replica *= kv_padding / max(shape.num_kv_heads / tp, 1.0)
        kv_replica = max(kv_replica, kv_rank * tp)
    # every data-parallel attention group holds its own copy of the non-expert weights
    replica_weight_bytes = total_weight_bytes + (dp_attention - 1) * (total_weight_bytes - expert_bytes)
    weight_per_device = replica_weight_bytes / devices
    free = usable_memory_bytes(accelerator) * devices - replica_weight_bytes
    tp_devices = max(tp / cores, 1.0)
    all_reduce = _placed_all_reduce(cluster, cores, tp, eff.comm)
    exchange = expert_all_to_all(cluster, cores, ep, eff.comm) if ep > 1 else ExpertExchange(0.0, 0.0)
    return ReplicaCost(
        model=shape.name,
        num_layers=shape.num_layers,
        replica_devices=devices,
        tp_devices=tp_devices,
        gemm_flop_per_token=(
            per_token.forward_matmul_flop
            - head
            - expert_flop
            + latent_extra_flop
            + down_flop
            + FLOP_PER_MAC * (extra_head_params + router_copies)
        ),
        head_flop_per_token=head * accelerator.peak_flop_per_s(matmul) / accelerator.peak_flop_per_s(head_precision),
        attention_flop_per_context_token=attention_core_flop_per_token(shape, 1, causal=False) * head_padding,
        decode_attention_flop_per_context_token=mla_decode_attention_flop(shape) * head_padding,
        attention_flop_per_s=accelerator.peak_flop_per_s(_attention_precision(matmul, kv_format)),
        two_batch_overlap=two_batch_overlap,
        pipeline_stages=pp,
        tile_tokens=min(accelerator.matmul_tile) / 2,
        dense_weight_bytes=read_weight_bytes - expert_bytes,
        expert_weight_bytes=expert_bytes,
        num_experts=num_experts,
        top_k=top_k,
        kv_bytes_per_token_replica=kv_replica,
        kv_capacity=max(0, math.floor(free / kv_replica)),
        weight_bytes_per_device=weight_per_device,
        flop_per_s=accelerator.peak_flop_per_s(matmul),
        hbm_bytes_per_s=accelerator.hbm_bw_bytes_per_s,
        all_reduce=all_reduce,
        all_to_all=(exchange.slope, exchange.intercept),
        all_to_all_network=exchange.network_slope,
        ep_nodes=exchange.nodes,
        ep=ep,
        moe_layers=shape.num_moe_layers if shape.moe is not None else 0,
        eff=eff,
        engine_max_batch=max_batch,
        hidden_bytes_per_token=shape.hidden_dim * ACTIVATION_BYTES,
        scores_per_pair=float(shape.num_heads * shape.num_layers) * head_padding,
        kv_reads_per_head=1.0 if attention.shares_kv else _query_heads_per_stored_kv_head(shape, tp, head_padding),
        score_bytes=attention.score_bytes,
        launch_s=0.0 if cuda_graphs else KERNEL_LAUNCH_S * KERNELS_PER_LAYER * shape.num_layers,
        per_request_host_work=per_request_host_work,
        expert_flop_per_token=expert_flop,
        expert_flop_per_s=accelerator.peak_flop_per_s(weights.expert_matmul(accelerator)),
        dp_attention=dp_attention,
        dispatch_bytes_per_token=shape.hidden_dim * _dispatch_bytes(weights.expert_matmul(accelerator)),
        elementwise_bytes_per_token=elementwise_bytes_per_token(shape, tp, ep),
        buckets=runtime_buckets(accelerator, shape.seq_len),
        window=shape.sliding_window or 0,
        window_share=shape.sliding_window_share,
        expert_load_extreme=expected_max_normal(ep) if num_experts > 1 else 0.0,
        expert_load_cv2=placement_cv2(num_experts, slots, ep, balanced=balanced) if num_experts > 1 else 0.0,
        experts_per_rank=slots // ep if num_experts > 1 and ep > 1 else 0,
    )


def elementwise_bytes_per_token(shape: TransformerShape, tp: int, ep: int = 1) -> float:
    """HBM bytes one token moves through the memory-bound kernels of all layers, summed over a ``tp`` group.

    Per layer: the two fused add-norms on every rank (``NORM_BYTES_PER_HIDDEN`` per hidden unit), the rotary
    embedding of the query and key heads (read and write, RoPE models), and the activation function over the MLP's
    width -- a MoE layer's ``top_k`` routed experts plus its shared ones -- split over the ranks. A MoE layer also
    combines its experts' outputs: each routed expert writes a hidden-wide output row for every token copy it
    served and the combine reads the ``top_k`` rows back to weight and sum them (``COMBINE_BYTES_PER_COPY``), on
    every rank holding a slice of the expert (``tp / ep`` of them: each rank's down projection writes a partial
    row of its own under tensor parallelism).
    """
    norms = tp * NORM_BYTES_PER_HIDDEN * shape.hidden_dim
    rotary = 0.0
    if shape.position_embedding is PositionEmbedding.ROPE:
        rotary = 2 * ACTIVATION_BYTES * (shape.num_heads + shape.num_kv_heads) * shape.head_dim
    per_width = ACTIVATION_BYTES * (3 if shape.mlp_activation.gated else 2)
    dense = norms + rotary + per_width * shape.ffn_hidden_dim
    if shape.moe is None:
        return shape.num_layers * dense
    moe = shape.moe
    width = moe.top_k * moe.expert_ffn_hidden_dim + moe.num_shared_experts * moe.shared_ffn_dim
    combine = COMBINE_BYTES_PER_COPY * moe.top_k * shape.hidden_dim * max(tp // ep, 1)  # ep >= 1 (replica_cost)
    return shape.num_dense_layers * dense + shape.num_moe_layers * (norms + rotary + per_width * width + combine)


def _unquantised_params(counts: ParamCounts) -> tuple[int, int]:
    """The parameters a quantised checkpoint keeps in 16 bits: the LM head's (an untied output head, or the tied
    embedding table the head multiplies by) and the rest of the embedding tables, which a forward pass only gathers
    rows from (the token embedding when untied, learned position embeddings), so they take memory but are not read
    each iteration. Quantisation recipes leave the head alone: TensorRT Model Optimizer disables the ``*lm_head*``
    quantizers in every default config, FP8 / INT8 / INT4-AWQ / NVFP4 / MXFP4 alike
    (NVIDIA/TensorRT-Model-Optimizer modelopt/torch/quantization/config.py, ``_default_disabled_quantizer_cfg``,
    commit 0991404)."""
    if counts.output_head:
        return counts.output_head, counts.embedding + counts.position_embedding
    return counts.embedding, counts.position_embedding


def _head_precision(accelerator: Accelerator, matmul: Precision) -> Precision:
    """The precision the 16-bit LM head multiplies in: the GEMMs' own when they are 16-bit, else bf16 (fp16 on a
    chip without bf16)."""
    if matmul in (Precision.BF16, Precision.FP16):
        return matmul
    return Precision.BF16 if Precision.BF16 in accelerator.precisions else Precision.FP16


def _attention_precision(matmul: Precision, kv: Precision) -> Precision:
    """The precision the attention core (QK^T, PV) multiplies in. Its operands are the queries and the cached keys
    and values, so a 16-bit cache is multiplied in 16 bits whatever the weights (SGLang's and vLLM's default cache
    under an fp8 checkpoint: FlashMLA, FlashInfer and FlashAttention take bf16 operands); otherwise the GEMMs'
    precision (TensorRT-LLM's FP8 context FMHA and XQA with an fp8 checkpoint and cache), but never 4 bits: an
    NVFP4 checkpoint quantises the linear layers only and keeps an fp8 cache multiplied in fp8 (NVIDIA's MLPerf
    Inference v5.1 documentation/calibration.md: "selected linear and MLP layers" in FP4, other layers FP8, KV cache
    FP8; no engine has a 4-bit attention kernel).

    Costing NVFP4 attention in fp8 was tried once before and made Blackwell worse. Back then one fitted
    ``compute`` fraction also had to cover DeepSeek-R1's rows (read as tensor-parallel and fitted), and the
    per-request host work was not modelled. Tried again on the present fit, it took the all-target median from
    11.0% to 10.2% and leave-one-group-out from 15.0% to 14.8% (p90 74.2% -> 74.3%). It brought MLPerf's R1 rows
    closer (B200 Offline throughput +184% -> +134%, Server TPOT -35% -> -23%). Blackwell's fitted compute fraction
    rose from 0.40 to 0.58 of the FP4 peak. The cost: its comm fell from 0.54 to 0.31, and MLPerf's B200 and
    GB200/GB300 groups held out got worse (17.8% -> 24.9%, 25.2% -> 28.5%)."""
    if matmul in (Precision.FP8, Precision.FP4) and kv in (Precision.BF16, Precision.FP16):
        return Precision.BF16
    return Precision.FP8 if matmul is Precision.FP4 else matmul


def mla_decode_attention_flop(shape: TransformerShape) -> float:
    """QK^T and AV FLOPs per (decode query, cached token) pair over all layers of an MLA model; 0 for other models.

    Decode kernels absorb W_UK into the query and W_UV into the output (DeepSeek-V2 report sec. 2.1.3), so every
    head attends over the cached latent itself: QK^T over ``kv_lora_rank + qk_rope_head_dim`` channels (512 + 64)
    and AV over ``kv_lora_rank`` (512), i.e. multi-query attention with one 576-wide KV head shared by all heads
    (FlashMLA's decode kernel, SGLang's and vLLM's MLA backends) -- 3.4x the FLOPs of the expanded heads'
    ``qk_head_dim + v_head_dim`` (192 + 128). The absorbed projections themselves are per-token GEMMs with the same
    weights as ``kv_b_proj``, already counted. Prefill expands the latent into per-head keys and values (the
    engines' non-absorbed path) and keeps ``attention_core_flop_per_token``.
    """
    if shape.mla is None:
        return 0.0
    mla = shape.mla
    width = 2 * mla.kv_lora_rank + mla.qk_rope_head_dim
    return float(FLOP_PER_MAC * shape.num_heads * width * shape.num_layers)


def _dispatch_bytes(expert_matmul: Precision) -> float:
    """Bytes per element of a token dispatched to the experts: fp8 for fp8/fp4 experts, else 16-bit."""
    return FP8_DISPATCH_BYTES if expert_matmul in (Precision.FP8, Precision.FP4) else ACTIVATION_BYTES


def check_dp_attention(shape: TransformerShape | None, *, tp: int, ep: int, dp_attention: int) -> None:
    """Refuse a layout the cost model cannot express: ``ep`` beyond ``tp`` needs data-parallel attention groups,
    and data-parallel attention spreads a MoE model's experts over every rank (``ep = tp x dp_attention``)."""
    if dp_attention == 1:
        if ep > tp:
            raise field_error(
                "ep", ep, f"at most tp={tp} (experts are spread over the tensor ranks), or tp x dp_attention with "
                f"data-parallel attention (dp_attention={ep // tp if ep % tp == 0 else 'ep/tp'})",
            )  # fmt: skip
        return
    if shape is not None and shape.moe is None:
        raise field_error("dp_attention", dp_attention, f"1 for {shape.name}, a dense model (add replicas instead)")
    if ep != tp * dp_attention:
        raise field_error("ep", ep, f"tp x dp_attention = {tp * dp_attention} (experts spread over every rank)")


def _query_heads_per_stored_kv_head(shape: TransformerShape, tp: int, head_padding: float) -> float:
    """How many query heads read each KV head a rank stores, when every query head reads its own (per-head kernels):
    a rank holds ``heads/tp`` query heads and ``max(kv_heads/tp, 1)`` KV heads (replicated when tp > kv_heads)."""
    if shape.mla is not None:
        return 1.0  # MLA decode absorbs the projections: one latent cache read per token (DeepSeek-V2 sec. 2.1)
    query_per_rank = shape.num_heads * head_padding / tp
    kv_per_rank = max(shape.num_kv_heads / tp, 1.0)
    return max(query_per_rank / kv_per_rank, 1.0)
