"""FLOPs of a transformer: per token, per published closed form, and per GEMM for the step-time model.

Conventions (say which, formulas.md "FLOPs"):

- One multiply-add is 2 FLOP. Only matrix multiplications are counted: weight GEMMs (attention projections,
  MLP/experts, router, LM head) and the attention core (QK^T and AV). Biases, norms, softmax, activations and
  the input-embedding lookup are not, as in Korthikanti et al. 2022 sec. 6, whose closed form this count
  therefore reproduces exactly for a GPT shape.
- The backward pass costs twice the forward for every matmul (gradients w.r.t. inputs and weights; Kaplan et
  al. 2020 sec. 2.1), so training = 3 x forward. Recomputation is *hardware* FLOPs, never model FLOPs.
- ``causal=True`` counts half of the s x s score and value matrices (what causal FlashAttention computes);
  ``causal=False`` the full matrices, as Korthikanti/Narayanan/PaLM do. Every function takes the flag.
- MoE: only the ``top_k`` routed and the shared experts of a token are counted, plus the router's ``2·h·E``
  (formulas.md, "MoE").
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, replace
from typing import Any

from rainier.errors import field_error
from rainier.workload.memory import Recompute
from rainier.workload.params import count_params
from rainier.workload.shape import TransformerShape

FLOP_PER_MAC = 2
BACKWARD_TO_FORWARD = 2  # Kaplan et al. 2020 sec. 2.1: backward ~ 2x forward for matmuls
CAUSAL_FRACTION = 0.5  # causal attention computes about half of the s x s matrix (formulas.md, PaLM note)


@dataclass(frozen=True, slots=True, kw_only=True)
class FlopsPerToken:
    """Forward FLOPs per token at a sequence length, split into weight matmuls and the attention core."""

    seq_len: int
    causal: bool
    forward_matmul_flop: float  # weight GEMMs, router and LM head included
    forward_attention_flop: float  # QK^T and AV

    @property
    def forward_flop(self) -> float:
        return self.forward_matmul_flop + self.forward_attention_flop

    @property
    def backward_flop(self) -> float:
        return BACKWARD_TO_FORWARD * self.forward_flop

    @property
    def training_flop(self) -> float:
        """Model FLOPs per token of one training step (forward + backward, no recompute)."""
        return self.forward_flop + self.backward_flop

    @property
    def forward_flop_without_attention(self) -> float:
        return self.forward_matmul_flop

    @property
    def backward_flop_without_attention(self) -> float:
        return BACKWARD_TO_FORWARD * self.forward_matmul_flop

    def to_dict(self) -> dict[str, Any]:
        return {
            "seq_len": self.seq_len,
            "causal": self.causal,
            "forward_flop": self.forward_flop,
            "backward_flop": self.backward_flop,
            "training_flop": self.training_flop,
            "forward_flop_without_attention": self.forward_flop_without_attention,
            "backward_flop_without_attention": self.backward_flop_without_attention,
        }


def _matmul_weights_per_token(shape: TransformerShape) -> int:
    """Weight elements one token multiplies through: active layer weights (no biases/norms) + router + LM head."""
    h = shape.hidden_dim
    a = shape.num_heads
    if shape.mla is not None:
        mla = shape.mla
        if mla.q_lora_rank is not None:
            query = h * mla.q_lora_rank + mla.q_lora_rank * a * mla.qk_head_dim
        else:
            query = h * a * mla.qk_head_dim
        attention = query + h * (mla.kv_lora_rank + mla.qk_rope_head_dim)
        attention += mla.kv_lora_rank * a * (mla.qk_nope_head_dim + mla.v_head_dim) + a * mla.v_head_dim * h
    else:
        attention = h * (a + 2 * shape.num_kv_heads) * shape.head_dim + a * shape.head_dim * h
    matrices = shape.mlp_activation.num_matrices
    dense_mlp = matrices * h * shape.ffn_hidden_dim
    total = (attention + dense_mlp) * shape.num_dense_layers
    if shape.moe is not None:
        moe = shape.moe
        experts = matrices * h * (moe.top_k * moe.expert_ffn_hidden_dim + moe.num_shared_experts * moe.shared_ffn_dim)
        total += (attention + experts + h * moe.num_experts) * shape.num_moe_layers  # router: 2·h·E FLOPs (formulas.md)
    return total + shape.vocab_size * h  # LM head, tied or not


def attention_core_flop_per_token(shape: TransformerShape, seq_len: int, *, causal: bool) -> float:
    """QK^T and AV FLOPs per token over all layers: ``2·s·a·(d_qk + d_v)`` per layer, halved when causal.

    For MHA with ``a·d = h`` this is Kaplan et al. 2020 Table 1's ``2·n_ctx·d_attn`` per layer doubled for AV,
    i.e. the ``4·s·h`` per token per layer inside Korthikanti et al. 2022 sec. 6. Layers with a sliding window
    shorter than ``s`` count ``W`` keys a query instead (``W - W²/2s`` on average when causal).
    """
    full = FLOP_PER_MAC * seq_len * shape.num_heads * (shape.qk_head_dim + shape.v_head_dim) * shape.num_layers
    window = shape.sliding_window
    if window is None or window >= seq_len:
        return full * (CAUSAL_FRACTION if causal else 1.0)
    if causal:  # the mean of min(i, W) keys a query in the windowed layers (TransformerShape.causal_keys)
        return full / seq_len * shape.causal_keys(seq_len)
    share = shape.sliding_window_share  # full matrix: W keys a query in the windowed layers
    return full / seq_len * ((1.0 - share) * seq_len + share * window)


def flops_per_token(shape: TransformerShape, seq_len: int | None = None, *, causal: bool = True) -> FlopsPerToken:
    """Forward FLOPs per token (and, through properties, backward and training) at ``seq_len``."""
    s = _seq_len(shape, seq_len)
    return FlopsPerToken(
        seq_len=s,
        causal=causal,
        forward_matmul_flop=float(FLOP_PER_MAC * _matmul_weights_per_token(shape)),
        forward_attention_flop=attention_core_flop_per_token(shape, s, causal=causal),
    )


def model_flops_per_token(shape: TransformerShape, seq_len: int | None = None, *, causal: bool = True) -> float:
    """Training model FLOPs per token (forward + backward = 3 x forward; recompute excluded), the MFU numerator."""
    return flops_per_token(shape, seq_len, causal=causal).training_flop


def hardware_flops_per_token(
    shape: TransformerShape, seq_len: int | None = None, *, causal: bool = True, recompute: Recompute = Recompute.NONE
) -> float:
    """Training FLOPs actually executed per token, recompute included (the HFU numerator).

    Full recompute repeats every layer's forward (not the LM head), as in Narayanan et al. 2021 eq. 3; selective
    recompute repeats only the attention core (Korthikanti et al. 2022 sec. 5).
    """
    counts = flops_per_token(shape, seq_len, causal=causal)
    extra = 0.0
    if recompute is Recompute.FULL:
        head = FLOP_PER_MAC * shape.vocab_size * shape.hidden_dim
        extra = counts.forward_flop - head
    elif recompute is Recompute.SELECTIVE:
        extra = counts.forward_attention_flop
    return counts.training_flop + extra


def megatron_model_flops(shape: TransformerShape, batch: int, seq_len: int | None = None) -> float:
    """Model FLOPs of one iteration over ``batch`` sequences, GPT closed form without recompute.

    ``72·B·s·l·h²·(1 + s/(6h) + V/(12·l·h))`` (Korthikanti et al. 2022, sec. 6). Valid for GPT shapes
    (MHA, ffn = 4h, two-matrix MLP, full attention matrix); other shapes should use :func:`model_flops_per_token`.
    """
    s = _seq_len(shape, seq_len)
    b, layers, h, v = batch, shape.num_layers, shape.hidden_dim, shape.vocab_size
    return 72.0 * b * s * layers * h**2 * (1 + s / (6 * h) + v / (12 * layers * h))


def megatron_hardware_flops(shape: TransformerShape, batch: int, seq_len: int | None = None) -> float:
    """Same with full recompute (one extra forward): ``96·B·s·l·h²·(1 + s/(6h) + V/(16·l·h))``.

    Narayanan et al. 2021, eq. 3; the TFLOP/s of their Table 1 count these FLOPs.
    """
    s = _seq_len(shape, seq_len)
    b, layers, h, v = batch, shape.num_layers, shape.hidden_dim, shape.vocab_size
    return 96.0 * b * s * layers * h**2 * (1 + s / (6 * h) + v / (16 * layers * h))


def palm_model_flops_per_token(shape: TransformerShape, seq_len: int | None = None) -> float:
    """``6N + 12·l·a·d_head·s`` (Chowdhery et al. 2022, PaLM, appendix B): full attention matrix.

    ``N`` is the active parameter count (embeddings included, as published totals are), so for untied
    models the input-embedding lookup is counted as if it were a matmul.
    """
    s = _seq_len(shape, seq_len)
    n = count_params(shape).active
    return 6.0 * n + 12.0 * shape.num_layers * shape.num_heads * shape.head_dim * s


def _seq_len(shape: TransformerShape, seq_len: int | None) -> int:
    if seq_len is None:
        return shape.seq_len
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise field_error("seq_len", seq_len, "a positive integer")
    return seq_len


# ----------------------------------------------------------------------------------------------------------------
# Per-GEMM shapes for the roofline step-time model
# ----------------------------------------------------------------------------------------------------------------


class GemmKind(enum.StrEnum):
    """Which matmul of a layer (or of the LM head) a :class:`Gemm` is."""

    QKV = "qkv"
    Q_DOWN = "q_down"  # MLA query compression
    Q_UP = "q_up"
    KV_DOWN = "kv_down"  # MLA latent + rotary key
    KV_UP = "kv_up"
    ATTENTION_SCORE = "attention_score"  # Q·K^T
    ATTENTION_VALUE = "attention_value"  # P·V
    ATTENTION_OUT = "attention_out"
    MLP_UP = "mlp_up"  # gate and up fused for gated units
    MLP_DOWN = "mlp_down"
    ROUTER = "router"
    EXPERT_UP = "expert_up"
    EXPERT_DOWN = "expert_down"
    SHARED_EXPERT_UP = "shared_expert_up"
    SHARED_EXPERT_DOWN = "shared_expert_down"
    LM_HEAD = "lm_head"


@dataclass(frozen=True, slots=True, kw_only=True)
class Gemm:
    """One forward matmul ``Y[m, n] = X[m, k] · W[k, n]`` on one rank, repeated ``batch`` times.

    ``batch`` counts independent matmuls of this shape (sequences x local heads for the attention core, local
    experts for MoE). ``flop_fraction`` is the share of the output computed (0.5 for causal attention).
    ``has_weight`` is False for the attention core (both operands are activations).
    """

    kind: GemmKind
    m: int
    n: int
    k: int
    batch: int = 1
    flop_fraction: float = 1.0
    has_weight: bool = True

    @property
    def flop(self) -> float:
        return FLOP_PER_MAC * self.m * self.n * self.k * self.batch * self.flop_fraction

    @property
    def weight_elements(self) -> int:
        """Elements of the weight operand read (0 for activation x activation matmuls)."""
        return self.k * self.n * self.batch if self.has_weight else 0

    def backward(self) -> tuple[Gemm, Gemm]:
        """Input-gradient ``dX[m,k] = dY[m,n]·W^T`` (reads W) and weight-gradient ``dW[k,n] = X^T·dY``.

        Each has the forward's FLOPs, hence backward = 2 x forward (Kaplan et al. 2020 sec. 2.1).
        """
        return (
            replace(self, m=self.m, n=self.k, k=self.n),
            replace(self, m=self.k, n=self.n, k=self.m, has_weight=False),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind.value,
            "m": self.m,
            "n": self.n,
            "k": self.k,
            "batch": self.batch,
            "flop_fraction": self.flop_fraction,
            "flop": self.flop,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelGemms:
    """Forward GEMMs of one micro-batch on one tensor-parallel rank: per layer kind, with layer counts, + head."""

    dense_layer: tuple[Gemm, ...]
    num_dense_layers: int
    moe_layer: tuple[Gemm, ...]
    num_moe_layers: int
    head: tuple[Gemm, ...]

    @property
    def forward_flop(self) -> float:
        return (
            sum(g.flop for g in self.dense_layer) * self.num_dense_layers
            + sum(g.flop for g in self.moe_layer) * self.num_moe_layers
            + sum(g.flop for g in self.head)
        )


def tp_divisibility_problem(shape: TransformerShape, tp_degree: int) -> str | None:
    """Why ``tp_degree`` cannot shard this shape's heads (None when it can): for plan validity checks."""
    if isinstance(tp_degree, bool) or not isinstance(tp_degree, int) or tp_degree < 1:
        return f"tp_degree={tp_degree!r} must be a positive integer"
    if shape.num_heads % tp_degree:
        return f"tp_degree={tp_degree} must divide num_heads={shape.num_heads}"
    kv = shape.num_kv_heads
    if kv % tp_degree and tp_degree % kv:
        return f"tp_degree={tp_degree} and num_kv_heads={kv} must divide one another (KV heads split or replicated)"
    return None


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def layer_gemms(
    shape: TransformerShape,
    *,
    micro_batch: int,
    seq_len: int | None = None,
    tp_degree: int = 1,
    moe_layer: bool = False,
    ep_degree: int = 1,
    expert_tp_degree: int | None = None,
    causal: bool = True,
    attention_span: int | None = None,
) -> tuple[Gemm, ...]:
    """Forward GEMMs of one layer for ``micro_batch`` sequences on one of ``tp_degree`` Megatron-style ranks.

    Column-parallel Q/K/V, MLP up and expert up; row-parallel output and down projections (Shoeybi et al.
    2019, sec. 3); heads split over ranks, KV heads replicated when ``tp_degree`` exceeds them. With sequence
    parallelism the GEMMs see the all-gathered ``b·s`` rows, so ``m`` is the same. MLA down projections and
    the router are replicated on every rank. MoE assumes balanced routing: each of the ``E/ep`` local experts
    gets ``b·s·top_k·ep/E`` tokens (rounded up), its width split over ``expert_tp_degree`` (default
    ``tp_degree``). Widths that do not divide are rounded up (padding).

    The attention core's score GEMM has one row per query and one column per key a query sees: ``s`` keys, or
    ``attention_span`` when the sequence holds packed documents (``TransformerShape.document_len``; the caller
    passes this rank's share of a document under context parallelism). Its causal fraction halves either.
    """
    s = _seq_len(shape, seq_len)
    keys = s if attention_span is None else min(attention_span, s)
    if isinstance(keys, bool) or not isinstance(keys, int) or keys < 1:
        raise field_error("attention_span", attention_span, "a positive integer")
    if isinstance(micro_batch, bool) or not isinstance(micro_batch, int) or micro_batch < 1:
        raise field_error("micro_batch", micro_batch, "a positive integer")
    problem = tp_divisibility_problem(shape, tp_degree)
    if problem:
        raise field_error("tp_degree", tp_degree, problem)
    t = tp_degree
    tokens = micro_batch * s
    h = shape.hidden_dim
    heads = shape.num_heads // t
    fraction = CAUSAL_FRACTION if causal else 1.0
    gemms: list[Gemm] = []
    if shape.mla is not None:
        mla = shape.mla
        if mla.q_lora_rank is not None:
            gemms.append(Gemm(kind=GemmKind.Q_DOWN, m=tokens, n=mla.q_lora_rank, k=h))
            gemms.append(Gemm(kind=GemmKind.Q_UP, m=tokens, n=heads * mla.qk_head_dim, k=mla.q_lora_rank))
        else:
            gemms.append(Gemm(kind=GemmKind.Q_UP, m=tokens, n=heads * mla.qk_head_dim, k=h))
        gemms.append(Gemm(kind=GemmKind.KV_DOWN, m=tokens, n=mla.kv_lora_rank + mla.qk_rope_head_dim, k=h))
        gemms.append(
            Gemm(kind=GemmKind.KV_UP, m=tokens, n=heads * (mla.qk_nope_head_dim + mla.v_head_dim), k=mla.kv_lora_rank)
        )
    else:
        kv_heads = max(shape.num_kv_heads // t, 1)
        gemms.append(Gemm(kind=GemmKind.QKV, m=tokens, n=(heads + 2 * kv_heads) * shape.head_dim, k=h))
    core = micro_batch * heads
    gemms.append(
        Gemm(
            kind=GemmKind.ATTENTION_SCORE,
            m=s,
            n=keys,
            k=shape.qk_head_dim,
            batch=core,
            flop_fraction=fraction,
            has_weight=False,
        )
    )
    gemms.append(
        Gemm(
            kind=GemmKind.ATTENTION_VALUE,
            m=s,
            n=shape.v_head_dim,
            k=keys,
            batch=core,
            flop_fraction=fraction,
            has_weight=False,
        )
    )
    gemms.append(Gemm(kind=GemmKind.ATTENTION_OUT, m=tokens, n=h, k=heads * shape.v_head_dim))
    up_factor = 2 if shape.mlp_activation.gated else 1
    moe = shape.moe
    if not moe_layer or moe is None:
        ffn = _ceil_div(shape.ffn_hidden_dim, t)
        gemms.append(Gemm(kind=GemmKind.MLP_UP, m=tokens, n=up_factor * ffn, k=h))
        gemms.append(Gemm(kind=GemmKind.MLP_DOWN, m=tokens, n=h, k=ffn))
        return tuple(gemms)
    if isinstance(ep_degree, bool) or not isinstance(ep_degree, int) or ep_degree < 1 or moe.num_experts % ep_degree:
        raise field_error("ep_degree", ep_degree, f"a positive divisor of num_experts={moe.num_experts}")
    etp = t if expert_tp_degree is None else expert_tp_degree
    if isinstance(etp, bool) or not isinstance(etp, int) or etp < 1:
        raise field_error("expert_tp_degree", expert_tp_degree, "a positive integer")
    gemms.append(Gemm(kind=GemmKind.ROUTER, m=tokens, n=moe.num_experts, k=h))
    local_experts = moe.num_experts // ep_degree
    # The EP x ETP ranks of an expert group hold tokens / tp each (sequence parallel) and route top_k copies to
    # the experts; each local expert (width split over etp) gets tokens*top_k*ep*etp/(tp*E) rows. With etp = tp
    # (Megatron's default) this is tokens*top_k*ep/E ("MoE parallel folding" regroups the same ranks).
    expert_tokens = _ceil_div(tokens * moe.top_k * ep_degree * etp, moe.num_experts * t)
    expert_ffn = _ceil_div(moe.expert_ffn_hidden_dim, etp)
    gemms.append(Gemm(kind=GemmKind.EXPERT_UP, m=expert_tokens, n=up_factor * expert_ffn, k=h, batch=local_experts))
    gemms.append(Gemm(kind=GemmKind.EXPERT_DOWN, m=expert_tokens, n=h, k=expert_ffn, batch=local_experts))
    if moe.num_shared_experts:
        shared = _ceil_div(moe.num_shared_experts * moe.shared_ffn_dim, t)
        gemms.append(Gemm(kind=GemmKind.SHARED_EXPERT_UP, m=tokens, n=up_factor * shared, k=h))
        gemms.append(Gemm(kind=GemmKind.SHARED_EXPERT_DOWN, m=tokens, n=h, k=shared))
    return tuple(gemms)


def head_gemms(
    shape: TransformerShape, *, micro_batch: int, seq_len: int | None = None, tp_degree: int = 1
) -> tuple[Gemm, ...]:
    """The LM head (vocabulary projection), column-parallel over ``tp_degree`` (vocabulary padded to divide)."""
    s = _seq_len(shape, seq_len)
    if isinstance(micro_batch, bool) or not isinstance(micro_batch, int) or micro_batch < 1:
        raise field_error("micro_batch", micro_batch, "a positive integer")
    if isinstance(tp_degree, bool) or not isinstance(tp_degree, int) or tp_degree < 1:
        raise field_error("tp_degree", tp_degree, "a positive integer")
    return (
        Gemm(kind=GemmKind.LM_HEAD, m=micro_batch * s, n=_ceil_div(shape.vocab_size, tp_degree), k=shape.hidden_dim),
    )


def model_gemms(
    shape: TransformerShape,
    *,
    micro_batch: int,
    seq_len: int | None = None,
    tp_degree: int = 1,
    ep_degree: int = 1,
    expert_tp_degree: int | None = None,
    causal: bool = True,
    attention_span: int | None = None,
) -> ModelGemms:
    """All forward GEMMs of one micro-batch on one tensor-parallel rank (pipeline stages take layer slices)."""
    common: dict[str, Any] = {
        "micro_batch": micro_batch,
        "seq_len": seq_len,
        "tp_degree": tp_degree,
        "causal": causal,
        "attention_span": attention_span,
    }
    dense = layer_gemms(shape, **common)
    moe: tuple[Gemm, ...] = ()
    if shape.moe is not None:
        moe = layer_gemms(shape, moe_layer=True, ep_degree=ep_degree, expert_tp_degree=expert_tp_degree, **common)
    return ModelGemms(
        dense_layer=dense,
        num_dense_layers=shape.num_dense_layers,
        moe_layer=moe,
        num_moe_layers=shape.num_moe_layers,
        head=head_gemms(shape, micro_batch=micro_batch, seq_len=seq_len, tp_degree=tp_degree),
    )
