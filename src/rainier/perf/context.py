"""What stays fixed while plans vary (model, cluster, efficiencies) and the per-key pieces of the step model.

The step model splits in two. Quantities that depend on a few plan fields only (one layer's pass times for a
given ``tp, cp, ep, etp, mbs, sp, precision, ...``; a layer's activation bytes; the collectives of a placed
group; the stage layout of a pipeline) are computed once per distinct key by scalar functions and cached here.
``perf.batch`` gathers them into arrays and does the rest over all plans at once.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from rainier.hardware import Cluster
from rainier.parallel.pipeline import StageRow, stage_rows
from rainier.parallel.placement import _machine_levels, link_classes, place_axis
from rainier.parallel.plan import DegreeUnit
from rainier.perf.columns import FLASH2_ATTENTION, FP8_ATTENTION, FP8_RECIPES, PRECISIONS, RECOMPUTES
from rainier.perf.compute import CAST_BYTES, PassForms, Rank, Side, head_forms, is_8bit, layer_forms, recording_sides
from rainier.perf.efficiency import Efficiency, flash2_speed
from rainier.perf.links import GroupLinks, group_links
from rainier.precision import Precision
from rainier.workload.flops import layer_gemms, model_gemms
from rainier.workload.memory import layer_activation_bytes
from rainier.workload.params import ParamCounts, count_params
from rainier.workload.shape import TransformerShape

FloatArray = NDArray[np.float64]
# Per-key results shared by every context of one model, chip, unit and set of efficiencies (see
# :class:`SharedTables`): a fleet deadline search builds a context per cluster size it tries, and each would
# otherwise form the same layer passes again. The oldest entries go first past this many.
SHARED_CONTEXTS = 8


@dataclass(slots=True)
class SharedTables:
    """What a :class:`StepContext` caches that depends on the model, the chip, the unit and the efficiencies
    alone, not on the cluster's size or topology: layer pass forms, activation bytes, ``perf.keys``' pass tables."""

    passes: dict[tuple[Any, ...], tuple[PassForms, PassForms | None, PassForms]] = field(default_factory=dict)
    activations: dict[tuple[int, ...], tuple[float, float]] = field(default_factory=dict)
    tables: dict[tuple[Any, ...], Any] = field(default_factory=dict)
    sides: list[Side] = field(default_factory=list)  # every GEMM side the passes decided (perf.compute.same_sides)


_SHARED: dict[tuple[Any, ...], SharedTables] = {}


def shared_tables(shape: TransformerShape, cluster: Cluster, cores: int, eff: Efficiency) -> SharedTables:
    """The per-key caches of contexts of ``shape`` on ``cluster``'s chip at ``cores`` per device under ``eff``,
    created on first use (at most :data:`SHARED_CONTEXTS` kept, oldest dropped first)."""
    key = (shape, cluster.accelerator, cores, eff)
    found = _SHARED.get(key)
    if found is None:
        found = SharedTables()
        while len(_SHARED) >= SHARED_CONTEXTS:
            _SHARED.pop(next(iter(_SHARED)))
        _SHARED[key] = found
    return found


@dataclass(frozen=True, slots=True)
class Placed:
    """A placed group's collectives and how many scale-up domains it spans (for node-limited routing)."""

    links: GroupLinks
    domains: int


@dataclass(slots=True)
class StepContext:
    """Model, cluster, and caches of per-key results for the vectorised step model.

    Nothing cached here depends on the efficiencies except which side of the roofline each GEMM is on, decided
    at ``eff`` (the efficiencies the context is built for); ``perf.batch.assemble`` applies the efficiencies.
    The caches that do not depend on the cluster's size (pass forms, activations, pass tables) are shared with
    every other context of the same model, chip, unit and efficiencies (:func:`shared_tables`).
    """

    shape: TransformerShape
    cluster: Cluster
    eff: Efficiency
    unit: DegreeUnit = DegreeUnit.DEVICE
    counts: ParamCounts = field(init=False)
    cores: int = field(init=False)
    link_names: tuple[str, ...] = field(init=False)
    link_index: dict[str, int] = field(init=False)
    scale_out_mask: FloatArray = field(init=False)
    layer_is_moe: tuple[bool, ...] = field(init=False)
    head_weight: float = field(init=False)
    _levels: list[Any] = field(init=False)
    _groups: dict[tuple[str, int, int], Placed] = field(init=False, default_factory=dict)
    # every GEMM side decided at ``eff`` by the contexts sharing these tables: all that the efficiencies decide
    # in what the context caches (perf.compute.same_sides tells whether other efficiencies decide them alike)
    gemm_sides: list[Side] = field(init=False)
    _passes: dict[tuple[Any, ...], tuple[PassForms, PassForms | None, PassForms]] = field(init=False)
    _activations: dict[tuple[int, ...], tuple[float, float]] = field(init=False)
    tables: dict[tuple[Any, ...], Any] = field(init=False)  # perf.keys' pass tables

    def __post_init__(self) -> None:
        self.counts = count_params(self.shape)
        self.cores = self.cluster.accelerator.num_logical_cores if self.unit is DegreeUnit.CORE else 1
        self._levels = _machine_levels(self.cluster, self.cores)
        classes = link_classes(self.cluster, self.cores)
        self.link_names = tuple(c.name for c in classes)
        self.link_index = {name: i for i, name in enumerate(self.link_names)}
        self.scale_out_mask = np.array([1.0 if c.scale_out else 0.0 for c in classes])
        self.layer_is_moe = tuple(self.shape.is_moe_layer(i) for i in range(self.shape.num_layers))
        self.head_weight = _head_weight(self.shape)
        shared = shared_tables(self.shape, self.cluster, self.cores, self.eff)
        self._passes, self._activations, self.tables = shared.passes, shared.activations, shared.tables
        self.gemm_sides = shared.sides

    # -- placed groups ---------------------------------------------------------------------------------------
    def group(self, axis: str, degree: int, stride: int) -> Placed:
        key = (axis, degree, stride)
        found = self._groups.get(key)
        if found is None:
            placed = place_axis(axis, degree, stride, self._levels, self.cluster, self.cores)
            domains = 1
            for level in placed.levels:
                if level.scale_out:
                    domains *= level.size
            found = Placed(links=group_links(placed.levels, self.link_index), domains=domains)
            self._groups[key] = found
        return found

    # -- compute ---------------------------------------------------------------------------------------------
    def rank(self, precision: Precision, recipe_code: int) -> Rank:
        accelerator = self.cluster.accelerator
        peak16 = accelerator.peak_flop_per_s(Precision.BF16 if accelerator.supports(Precision.BF16) else Precision.FP16)
        bits8 = is_8bit(precision)
        recipe = FP8_RECIPES[recipe_code]
        if precision is Precision.INT8:
            cast = CAST_BYTES["int8"]
        elif recipe is not None:
            cast = CAST_BYTES[recipe.value]
        else:
            cast = CAST_BYTES["mxfp8" if accelerator.microscaling else "tensorwise"]
        return Rank(
            peak_16bit_flop_per_s=peak16 / self.cores,
            peak_matmul_flop_per_s=accelerator.peak_flop_per_s(precision) / self.cores,
            hbm_bw_bytes_per_s=accelerator.hbm_bw_bytes_per_s / self.cores,
            bits8=bits8,
            tile=accelerator.matmul_tile,
            units=max(1.0, accelerator.matmul_units / self.cores),
            cast_bytes=cast,
            exp_per_s=None if accelerator.exp_per_s is None else accelerator.exp_per_s / self.cores,
            flash2_speed=flash2_speed(str(accelerator.efficiency_family)),
        )

    def passes(self, key: tuple[Any, ...]) -> tuple[PassForms, PassForms | None, PassForms]:
        """Forms of a dense layer, a MoE layer (or None) and the head for one micro-batch.

        ``key`` = (tp, cp, ep, etp, mbs, sp, precision, lora, flash, recipe); flash is the attention code
        (0 unfused, 1 fused, 2 fused FP8, 3 FlashAttention-2's kernels: ``perf.columns``).
        """
        found = self._passes.get(key)
        if found is not None:
            return found
        tp, cp, ep, etp, mbs, sp, precision, lora, flash, recipe = key
        shape = self.shape
        seq_local = shape.seq_len // cp
        tokens = mbs * seq_local
        norm_tokens = tokens / tp if sp else float(tokens)
        rank = self.rank(PRECISIONS[precision], recipe)
        # Packed documents: each rank holds 1/cp of every document (Megatron splits each one over the CP ranks),
        # so its queries see a document's keys in cp ring steps of ceil(document/cp) keys each. Sliding-window
        # layers shorten the mean span the same way (TransformerShape.causal_attention_span).
        keys = shape.causal_attention_span
        span = None if keys >= shape.seq_len else -(-keys // cp)
        gemms = model_gemms(
            shape,
            micro_batch=mbs,
            seq_len=seq_local,
            tp_degree=tp,
            ep_degree=ep,
            expert_tp_degree=etp,
            attention_span=span,
        )

        def formed(layer: Any) -> PassForms:
            return layer_forms(
                shape,
                layer,
                rank=rank,
                classify=self.eff,
                tokens=tokens,
                norm_tokens=norm_tokens,
                tp_degree=tp,
                cp_degree=cp,
                weight_gradients=not lora,
                flash_attention=bool(flash),
                fp8_attention=flash == FP8_ATTENTION,
                flash2_attention=flash == FLASH2_ATTENTION,
            )

        with recording_sides(self.gemm_sides):
            result = (
                formed(gemms.dense_layer),
                formed(gemms.moe_layer) if gemms.moe_layer else None,
                head_forms(gemms.head, rank=rank, classify=self.eff, weight_gradients=not lora),
            )
        self._passes[key] = result
        return result

    def activations(self, tp: int, cp: int, mbs: int, sp: bool, recompute: int, flash: bool) -> tuple[float, float]:
        """Activation bytes of one dense and one MoE layer for one micro-batch (Korthikanti et al. 2022)."""
        key = (tp, cp, mbs, int(sp), recompute, int(flash))
        found = self._activations.get(key)
        if found is None:
            shape = self.shape
            kwargs: dict[str, Any] = {
                "micro_batch": mbs,
                "seq_len": shape.seq_len // cp,
                "tp_degree": tp,
                "sequence_parallel": sp,
                "recompute": RECOMPUTES[recompute],
                "flash_attention": flash,
            }
            dense = layer_activation_bytes(shape, **kwargs).total_bytes
            moe = layer_activation_bytes(shape, moe_layer=True, **kwargs).total_bytes if shape.moe else 0.0
            found = (dense, moe)
            self._activations[key] = found
        return found

    def rows(self, pp: int, chunks: int, first: int, last: int) -> tuple[StageRow, ...]:
        """The pipeline's distinct rank loads (``parallel.pipeline.stage_rows``); -1 = first/last not set."""
        return stage_rows(
            self.layer_is_moe,
            pp,
            chunks,
            first=None if first < 0 else first,
            last=None if last < 0 else last,
            head_weight=self.head_weight,
        )


def _head_weight(shape: TransformerShape) -> float:
    """The output head's forward FLOPs in units of an average layer's (for the balanced pipeline split)."""
    dense = sum(g.flop for g in layer_gemms(shape, micro_batch=1))
    layers = dense * shape.num_dense_layers
    if shape.moe is not None:
        moe = sum(g.flop for g in layer_gemms(shape, micro_batch=1, moe_layer=True))
        layers += moe * shape.num_moe_layers
    head = 2.0 * shape.seq_len * shape.vocab_size * shape.hidden_dim
    return head / (layers / shape.num_layers)
