"""The busiest expert-parallel rank's routed load: how far above the mean the hottest rank's token copies sit.

Under expert parallelism every MoE layer waits for its busiest rank: the rank whose experts received the most
token copies computes longest and receives (and sends back) the most bytes in the dispatch and combine. Routing is
not even. A model's experts differ in popularity, on a given dataset and within a batch, and a batch's copies fall on
the ranks at random besides (TensorRT-LLM tech blog 4, "Scaling Expert Parallelism in TensorRT-LLM, Part 1",
2025: hot experts stable over hundreds of iterations, dataset-dependent; LMSYS "Large-scale EP" blog, 2025-05-05:
SGLang's prefill at EP32 runs 18% faster with a simulated perfect balance than with its default expert placement).

The model: a rank's load is the sum of its experts' loads. With ``k = slots / ep`` experts per rank drawn
independently of their popularity, its coefficient of variation is ``cv_expert / sqrt(k)`` from popularity, plus the
Poisson noise ``1 / sqrt(mean)`` of the batch's ``mean`` copies per rank; the busiest of ``ep`` ranks sits at the
expected maximum of ``ep`` normal draws (Blom's approximation). An expert-parallel load balancer (EPLB: DeepSeek-V3
report sec. 3.4; vLLM and SGLang ``--enable-eplb``, TensorRT-LLM's ``moe_config.load_balancer``) places and
replicates experts from their measured popularity, which leaves a small placement residual instead.

Both constants come from one published measurement, TensorRT-LLM tech blog 4 Table 1 (DeepSeek-R1 on 32 GB200, a
machine-translation dataset, 1,024 routed tokens per rank on average; imbalance ratio ``(max - mean) / mean``
averaged over layers and iterations): 1.564 without EPLB (8 experts per rank, EP32), 0.115 with it (8 slots per rank,
EP36). Solved back through the model they give an effective per-expert CV of 2.14 (the table's plain standard
deviation, 164 / 128 = 1.28, understates the tail that sets a maximum: the hottest expert takes 12x the mean) and a
balanced placement's CV of 0.045. The ratio is dataset-dependent; these are one dataset's, used for every model.
"""

from __future__ import annotations

import math
from statistics import NormalDist

# TensorRT-LLM tech blog 4, Table 1 (docs/source/blogs/tech_blog/blog4_Scaling_Expert_Parallelism_in_TensorRT-LLM.md)
MEASURED_MEAN_COPIES = 1024.0  # routed tokens per rank, on average
UNBALANCED_RANKS, UNBALANCED_EXPERTS_PER_RANK, UNBALANCED_RATIO = 32, 8, 1.564  # no EPLB: 256 experts on EP32
MEASURED_EXPERTS = UNBALANCED_RANKS * UNBALANCED_EXPERTS_PER_RANK  # DeepSeek-R1's routed experts
BALANCED_RANKS, BALANCED_RATIO = 36, 0.115  # EPLB: 288 slots on EP36


def expected_max_normal(n: int) -> float:
    """The expected largest of ``n`` standard normal draws (Blom 1958: ``Phi^-1((n - 0.375) / (n + 0.25))``); 0 for
    one draw (the mean)."""
    if n <= 1:
        return 0.0
    return NormalDist().inv_cdf((n - 0.375) / (n + 0.25))


def _cv2(ratio: float, ranks: int) -> float:
    """The rank-load CV squared that, with the measured mean's Poisson noise, gives ``ratio`` at ``ranks``."""
    return (ratio / expected_max_normal(ranks)) ** 2 - 1.0 / MEASURED_MEAN_COPIES


# per expert, unbalanced, for the measured model's 256 experts (``placement_cv2`` scales it to other expert counts)
EXPERT_CV2 = UNBALANCED_EXPERTS_PER_RANK * _cv2(UNBALANCED_RATIO, UNBALANCED_RANKS)
BALANCED_CV2 = _cv2(BALANCED_RATIO, BALANCED_RANKS)  # per rank, after an EPLB placement


def placement_cv2(experts: int, slots: int, ep: int, *, balanced: bool) -> float:
    """The squared CV of a rank's routed load from expert popularity: ``slots / ep`` experts per rank placed
    without regard to popularity, or an EPLB placement's residual (``balanced``).

    A model routing over fewer, coarser experts spreads its load more evenly: the per-expert CV squared is taken
    in proportion to the expert count, from the measured 256 (an assumption: one model was measured). Mixtral's 8
    experts get a CV of 0.38, DeepSeek-V3's 256 the measured 2.14. With every slot a distinct expert the expert
    count cancels: a rank's CV squared is ``EXPERT_CV2 x ep / 256`` whatever the model (EP8: 0.38, 1.54x busiest)."""
    if ep <= 1:
        return 0.0
    if balanced:
        return BALANCED_CV2
    return EXPERT_CV2 * experts / MEASURED_EXPERTS * ep / slots


def busiest_load(copies: float, extreme: float, cv2: float, ep: int) -> float:
    """The busiest of ``ep`` ranks' routed copies over the mean ``copies`` per rank: ``1 + extreme x CV``, the CV from
    placement (``cv2``) and from the batch's Poisson noise; at most ``ep`` (one rank receiving everything)."""
    if extreme <= 0.0 or copies <= 0.0:
        return 1.0
    return min(1.0 + extreme * math.sqrt(cv2 + 1.0 / copies), float(ep))


def busiest_touched(touched: float, extreme: float, slots_per_rank: int) -> float:
    """The share of its expert slots the busiest rank reads, when each of a rank's ``slots_per_rank`` experts is
    touched with probability ``touched`` (the mean share): a binomial count, its largest of ``ep`` ranks at ``extreme``
    standard deviations above the mean, at most every slot. A step reads the touched experts' weights on every rank
    at once and waits for the rank that touched most: at one token, top-2 of Mixtral's 8 experts on EP8 leave two
    ranks reading a whole expert each while the mean rank reads a quarter of one (4x; the normal approximation of
    the largest count gives 3.5x)."""
    if extreme <= 0.0 or slots_per_rank <= 0 or touched >= 1.0:
        return touched
    mean = slots_per_rank * touched
    spread = math.sqrt(slots_per_rank * touched * (1.0 - touched))
    return min(mean + extreme * spread, float(slots_per_rank)) / slots_per_rank
