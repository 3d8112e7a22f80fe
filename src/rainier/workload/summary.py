"""One JSON-ready summary of a model: parameters, FLOPs per token, training-state bytes by group, KV cache.

This is what ``rainier model show`` prints; every number comes from the functions of this package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rainier.precision import Precision
from rainier.workload.flops import flops_per_token
from rainier.workload.memory import StateBytesPerParam, kv_cache_bytes_per_token
from rainier.workload.params import count_params
from rainier.workload.shape import TransformerShape


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelSummary:
    """Headline numbers of a shape at one sequence length (FLOPs counted both causal and full-matrix)."""

    shape: TransformerShape
    seq_len: int
    params_total: int
    params_active: int
    params_embedding: int
    params_by_group: dict[str, int]
    flops_causal: dict[str, Any]
    flops_full: dict[str, Any]
    state_bytes_per_param: StateBytesPerParam
    kv_precision: Precision
    kv_cache_bytes_per_token: float

    def to_dict(self) -> dict[str, Any]:
        per = self.state_bytes_per_param
        groups = {
            group: {
                "params": n,
                "weight_bytes": n * per.weight,
                "gradient_bytes": n * per.gradient,
                "optimizer_bytes": n * per.optimizer,
            }
            for group, n in self.params_by_group.items()
        }
        return {
            "model": self.shape.to_dict(),
            "seq_len": self.seq_len,
            "params_total": self.params_total,
            "params_active": self.params_active,
            "params_embedding": self.params_embedding,
            "flops_per_token": {"causal": self.flops_causal, "full_attention_matrix": self.flops_full},
            "training_state": {
                "bytes_per_param": {
                    "weight": per.weight,
                    "gradient": per.gradient,
                    "optimizer": per.optimizer,
                    "total": per.total,
                },
                "by_group": groups,
                "total_bytes": self.params_total * per.total,
            },
            "kv_cache": {"precision": self.kv_precision.value, "bytes_per_token": self.kv_cache_bytes_per_token},
        }


def summarize(
    shape: TransformerShape,
    *,
    seq_len: int | None = None,
    weight_precision: Precision = Precision.BF16,
    grad_precision: Precision = Precision.BF16,
    kv_precision: Precision = Precision.BF16,
) -> ModelSummary:
    """Summarise ``shape`` at ``seq_len`` (default: its own); training state is mixed-precision Adam."""
    run_shape = shape if seq_len is None else shape.with_seq_len(seq_len)
    counts = count_params(run_shape)
    return ModelSummary(
        shape=run_shape,
        seq_len=run_shape.seq_len,
        params_total=counts.total,
        params_active=counts.active,
        params_embedding=counts.embeddings_total,
        params_by_group=counts.by_group(),
        flops_causal=flops_per_token(run_shape, causal=True).to_dict(),
        flops_full=flops_per_token(run_shape, causal=False).to_dict(),
        state_bytes_per_param=StateBytesPerParam.mixed_precision_adam(weight_precision, grad_precision),
        kv_precision=kv_precision,
        kv_cache_bytes_per_token=kv_cache_bytes_per_token(run_shape, precision=kv_precision),
    )


def catalog_model_rows() -> list[dict[str, Any]]:
    """One JSON-ready row per named model (``rainier catalog models``): id, shape, parameter counts, sources."""
    from rainier.workload.registry import model_entries

    rows = []
    for entry in model_entries():
        shape = entry.shape
        counts = count_params(shape)
        rows.append(
            {
                "id": entry.id,
                "title": entry.title,
                "aliases": list(entry.aliases),
                "arch": "moe" if shape.moe else "dense",
                "num_layers": shape.num_layers,
                "hidden_dim": shape.hidden_dim,
                "num_heads": shape.num_heads,
                "num_kv_heads": shape.num_kv_heads,
                "seq_len": shape.seq_len,
                "params_total": counts.total,
                "params_active": counts.active,
                "published_params": entry.published_params,
                "sources": dict(entry.sources),
                "notes": entry.notes,
            }
        )
    return rows
