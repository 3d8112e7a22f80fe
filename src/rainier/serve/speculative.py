"""Speculative decoding: a cheap drafter proposes ``k`` tokens, the target model verifies them in one pass.

Each decode step of a sequence then costs the drafter's ``k`` proposals plus one target pass over ``k + 1``
query tokens (the proposals and the bonus token), and yields on average ``tau`` tokens: the mean acceptance
length, given, or from a per-token acceptance rate ``alpha`` as ``tau = (1 - alpha^(k+1)) / (1 - alpha)``
(Leviathan et al. 2023, "Fast Inference from Transformers via Speculative Decoding", eq. 1, i.i.d. acceptance).

What a drafter costs follows from what it is:

- ``eagle``, ``eagle3``: one decoder layer over the target's features plus the target's LM head, run ``k`` times
  (Li et al. 2024, EAGLE sec. 3; EAGLE-3, 2025, keeps one layer);
- ``mtp``: DeepSeek-V3's multi-token-prediction module, one transformer layer and the shared head per draft
  token (DeepSeek-V3 report sec. 2.2);
- ``medusa``: ``k`` extra heads evaluated in one pass (Cai et al. 2024), costed as one head layer pass;
- ``draft``: a separate small model (``model=``), ``k`` of its own decode steps on the same devices;
- ``ngram``: prompt lookup, no model (costed as free).

NxD Inference counts its ``speculation_length`` as the tokens the target verifies, the pending one included: the
drafter runs that many passes, uses the first ``k - 1`` as proposals and the last to fill its own cache ("k
iterations of the draft model. We use only first k-1 tokens. Extra run is for populating the kv cache",
neuronx-distributed-inference ``models/model_base.py`` ``_token_gen_forward``; the EAGLE path likewise runs ``k -
1`` draft steps, the target over ``k`` tokens and a final draft run, ``_eagle_token_gen_forward``), and the vLLM
Neuron plugin passes ``num_speculative_tokens`` as that length (vllm-neuron ``neuronx_distributed_model_loader.py``).
Such a speculation is ``counts_pending``: ``k - 1`` proposals, ``k`` tokens verified, ``k`` drafter passes.
Where the drafter runs matters on runtimes that launch compiled programs from the host (Neuron): NxD Inference's
fused speculation (``enable_fused_speculation``) compiles the draft loop and the verification into one program, one
launch per step; vLLM Neuron's EAGLE proposer compiles the drafter as its own program ("Single fused forward: KV
cache update + unrolled recurrent decode loop", vllm-project/vllm-neuron ``vllm_neuron/vllm/spec_decode/eagle.py``),
launched after the target's, so a step pays the replica's per-iteration launch cost twice (``separate_launch``).
Before the first token the drafter also runs over the prompt, to build its own KV cache (EAGLE over the target's
features, a draft model over the tokens, MTP over both): its prefill pass is charged to the TTFT ("the draft model
adds a small amount of compute before the first token", AWS Neuron EAGLE3 tutorial for vLLM Neuron, SDK 2.32).

When no acceptance is given, a documented default per method is used (``DEFAULT_ACCEPTANCE``): the middle of
the per-token acceptance rates the methods' papers report on chat benchmarks. Measured acceptance varies with
the data far more than between hardware, so give it when known.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from rainier.errors import field_error, quote
from rainier.serve.buckets import Buckets
from rainier.serve.cost import ReplicaCost
from rainier.workload.shape import TransformerShape

MAX_SPECULATIVE_TOKENS = 64


class SpecMethod(enum.StrEnum):
    DRAFT = "draft"
    EAGLE = "eagle"
    EAGLE3 = "eagle3"
    MEDUSA = "medusa"
    MTP = "mtp"
    NGRAM = "ngram"


# Per-token acceptance rate when none is given. Leviathan et al. 2023 report alpha 0.5-0.9 for small drafts of
# the same family; EAGLE reports acceptance lengths of ~3.5-4 at depth 5 (alpha ~0.75); EAGLE-3's are higher
# (alpha ~0.8); Medusa-1's ~0.6; DeepSeek-V3 sec. 5.4.3 reports 85-90% acceptance of its second token; prompt
# lookup (n-gram) is data-dependent and usually low.
DEFAULT_ACCEPTANCE = {
    SpecMethod.DRAFT: 0.7,
    SpecMethod.EAGLE: 0.75,
    SpecMethod.EAGLE3: 0.8,
    SpecMethod.MEDUSA: 0.6,
    SpecMethod.MTP: 0.85,
    SpecMethod.NGRAM: 0.5,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Speculation:
    """A speculative-decoding setting: method, tokens proposed per step, and how many are accepted."""

    method: SpecMethod
    num_tokens: int
    acceptance_rate: float | None = None  # per proposed token, in (0, 1)
    acceptance_length: float | None = None  # mean tokens a step yields, bonus included, in [1, k + 1]
    draft_model: str | None = None  # catalog name or config.json, for method=draft
    separate_launch: bool = False  # the drafter is its own compiled program, launched once more per step
    # k counts the tokens the target verifies, the pending one included (NxD Inference's speculation_length):
    # k - 1 proposals, and the drafter's k-th pass only fills its own cache
    counts_pending: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.num_tokens, bool) or not isinstance(self.num_tokens, int):
            raise field_error("speculative.k", self.num_tokens, f"a whole number from 1 to {MAX_SPECULATIVE_TOKENS}")
        if not 1 <= self.num_tokens <= MAX_SPECULATIVE_TOKENS:
            raise field_error("speculative.k", self.num_tokens, f"a whole number from 1 to {MAX_SPECULATIVE_TOKENS}")
        if self.acceptance_rate is not None and not 0 < self.acceptance_rate < 1:
            raise field_error("speculative.accept", self.acceptance_rate, "a per-token acceptance rate in (0, 1)")
        if self.acceptance_length is not None and not 1 <= self.acceptance_length <= self.verified_tokens:
            raise field_error(
                "speculative.len",
                self.acceptance_length,
                f"a mean acceptance length from 1 to the {self.verified_tokens} tokens a step verifies",
            )
        if self.acceptance_rate is not None and self.acceptance_length is not None:
            raise field_error("speculative", "accept and len", "one of accept (per token) or len (per step)")
        if not isinstance(self.separate_launch, bool):
            raise field_error("speculative.launch", self.separate_launch, "fused, separate or nxdi")
        if self.counts_pending and self.separate_launch:
            raise field_error("speculative.launch", "nxdi and separate", "one of them")
        if (self.method is SpecMethod.DRAFT) != (self.draft_model is not None):
            raise field_error("speculative.model", self.draft_model, "a draft model with method draft (only then)")

    @property
    def tokens_per_step(self) -> float:
        """Mean tokens one verification step yields (tau)."""
        if self.acceptance_length is not None:
            return self.acceptance_length
        alpha = self.acceptance_rate if self.acceptance_rate is not None else DEFAULT_ACCEPTANCE[self.method]
        return (1.0 - alpha**self.verified_tokens) / (1.0 - alpha)

    @property
    def proposals(self) -> int:
        """Tokens the drafter proposes per step."""
        return self.num_tokens - 1 if self.counts_pending else self.num_tokens

    @property
    def verified_tokens(self) -> int:
        """Query tokens of the target's verification pass: the proposals and the pending token."""
        return self.proposals + 1

    @property
    def draft_passes(self) -> int:
        """Sequential drafter passes per step (Medusa's heads run in one; n-gram lookup runs none)."""
        if self.method is SpecMethod.NGRAM:
            return 0
        return 1 if self.method is SpecMethod.MEDUSA else self.num_tokens

    def draft_shape(self, target: TransformerShape, draft: TransformerShape | None = None) -> TransformerShape | None:
        """The network one drafter pass runs: a one-layer head on the target's width, or the draft model."""
        if self.method is SpecMethod.NGRAM:
            return None
        if self.method is SpecMethod.DRAFT:
            return draft
        moe = target.moe
        if moe is not None:  # EAGLE/Medusa heads are dense layers; MTP's is one MoE layer
            moe = replace(moe, first_k_dense_layers=0) if self.method is SpecMethod.MTP else None
        # one full-attention layer
        return replace(target, num_layers=1, moe=moe, sliding_window=None, sliding_window_layers=0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method.value,
            "num_tokens": self.num_tokens,
            "acceptance_rate": self.acceptance_rate,
            "acceptance_length": self.acceptance_length,
            "draft_model": self.draft_model,
            "separate_launch": self.separate_launch,
            "counts_pending": self.counts_pending,
            "tokens_per_step": self.tokens_per_step,
        }


_KEYS = {
    "k": "num_tokens",
    "accept": "acceptance_rate",
    "len": "acceptance_length",
    "model": "draft_model",
    "launch": "separate_launch",
}
_LAUNCH = {"fused": False, "separate": True, "nxdi": False}
_SYNTAX = "METHOD:k=K[,accept=RATE | ,len=TOKENS][,model=DRAFT][,launch=fused|separate|nxdi] with METHOD " + ", ".join(
    m.value for m in SpecMethod
)


def parse_speculation(text: str) -> Speculation:
    """``eagle3:k=3,accept=0.74`` (or ``len=3.22``), ``draft:k=4,model=llama-3.1-8b``, ``mtp:k=1``;
    ``launch=separate`` when the drafter runs as its own program (vLLM Neuron's EAGLE), ``launch=nxdi`` for NxD
    Inference's fused speculation (one launch; ``k`` is its ``speculation_length``, the tokens verified: ``k - 1``
    proposals, the drafter's last pass filling its own cache), ``fused`` (the default)
    otherwise."""
    method_text, _, rest = text.strip().partition(":")
    try:
        method = SpecMethod(method_text.strip().lower())
    except ValueError:
        raise field_error("speculative", text, _SYNTAX) from None
    values: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in rest.split(","))):
        key, sep, raw = part.partition("=")
        name = _KEYS.get(key.strip().lower())
        if not sep or name is None or name in values:
            raise field_error("speculative", text, f"{_SYNTAX}; each key once")
        raw = raw.strip()
        if name == "draft_model":
            values[name] = raw
            continue
        if name == "separate_launch":
            if raw.lower() not in _LAUNCH:
                raise field_error("speculative.launch", raw, "fused or separate")
            values[name] = _LAUNCH[raw.lower()]
            values["counts_pending"] = raw.lower() == "nxdi"
            continue
        try:
            number = float(raw) if name != "num_tokens" else int(raw)
        except ValueError:
            raise field_error(f"speculative.{key.strip()}", raw, "a number") from None
        if isinstance(number, float) and not math.isfinite(number):
            raise field_error(f"speculative.{key.strip()}", raw, "a finite number")
        values[name] = number
    if "num_tokens" not in values:
        raise field_error("speculative", text, f"{_SYNTAX} (k is required)")
    return Speculation(method=method, **values)


# The speculative tokens per step as the engines' flags and write-ups name them: vLLM num_speculative_tokens, NxD
# Inference speculation_length, TensorRT-LLM max_draft_len / num_nextn_predict_layers, SGLang
# speculative_num_steps (its draft steps), Medusa's heads, and prose ("5 speculative tokens", "k=4").
_FREE_TEXT = re.compile(
    r"(?:num_speculative_tokens|speculation[_ ]length|num[_ ]draft[_ ]tokens|max[_ ]draft[_ ]len|"
    r"num_nextn_predict_layers|speculative[_ ]num[_ ]steps|medusa[_ ]num[_ ]heads)\D{0,4}(\d+)"
    r"|(\d+)\s+(?:speculative|draft(?:ed)?|medusa)\s+(?:tokens|heads)|\bk\s*=\s*(\d+)",
    re.IGNORECASE,
)
_DRAFT_NAME = re.compile(r"^\s*draft\s+(?:model\s+)?([\w./-]+)", re.IGNORECASE)
_DRAFT_ANYWHERE = re.compile(
    r"draft(?:[\s_-]+model)?\s*[:=]?\s*([\w./-]+)|([\w./-]+)\s+as\s+(?:the\s+|a\s+)?draft", re.IGNORECASE
)
_RATE = re.compile(r"acceptance rate\D{0,4}(\d+(?:\.\d+)?)\s*(%?)", re.IGNORECASE)
_LENGTH = re.compile(r"(?:acceptance|accepted|acceptance[_ ]length|mean accepted)\s*length\D{0,4}(\d+(?:\.\d+)?)",
                     re.IGNORECASE)  # fmt: skip
_METHOD_WORDS = (
    ("eagle3", SpecMethod.EAGLE3), ("eagle-3", SpecMethod.EAGLE3), ("eagle", SpecMethod.EAGLE),
    ("medusa", SpecMethod.MEDUSA), ("mtp", SpecMethod.MTP), ("nextn", SpecMethod.MTP),
    ("multi-token prediction", SpecMethod.MTP), ("n-gram", SpecMethod.NGRAM), ("ngram", SpecMethod.NGRAM),
    ("prompt lookup", SpecMethod.NGRAM),
)  # fmt: skip


def _speculative_tokens(text: str) -> int | None:
    found = _FREE_TEXT.search(text)
    if found is None:
        return None
    return int(next(g for g in found.groups() if g is not None))


def _named_draft(text: str, known_model: Callable[[str], bool]) -> str | None:
    """The first catalog model the text names as its draft (``draft NAME``, ``draft model: NAME``)."""
    for found in _DRAFT_ANYWHERE.finditer(text):
        name = (found[1] or found[2]).rstrip(".,;")
        if known_model(name):
            return name
    return None


def speculation_from_case(
    value: object, known_model: Callable[[str], bool] = lambda _name: False
) -> Speculation | None:
    """A validation case's ``serving.speculative``: null, a mapping (``method, num_tokens, acceptance_length,
    acceptance_rate, draft_model``) or the free text of the older cases, read for its method, ``k`` and
    published acceptance; a draft model that is not a catalog name is costed as an EAGLE-style head.

    Free text that opens with ``draft NAME`` of a model ``known_model`` holds is costed as that model (method
    ``draft``) whatever method label follows: the network the drafter runs is that model's (the NxD Inference
    tutorial's plain Qwen3-0.6B under the label ``eagle``)."""
    if value is None:
        return None
    if isinstance(value, dict):
        name = str(value.get("method", "")).lower()
        draft = value.get("draft_model")
        kind = SpecMethod(name) if name in {m.value for m in SpecMethod} else None
        if kind is None:
            raise field_error("serving.speculative.method", value.get("method"), ", ".join(m.value for m in SpecMethod))
        if value.get("num_tokens") is None:
            raise field_error(
                "serving.speculative.num_tokens",
                None,
                f"the number of speculative tokens, 1 to {MAX_SPECULATIVE_TOKENS} (the case does not state it)",
            )
        return Speculation(
            method=kind if kind is not SpecMethod.DRAFT or draft else SpecMethod.EAGLE,
            num_tokens=int(value.get("num_tokens") or 0),
            acceptance_length=value.get("acceptance_length"),
            acceptance_rate=value.get("acceptance_rate"),
            draft_model=str(draft) if kind is SpecMethod.DRAFT and draft else None,
        )
    text = str(value)
    low = text.lower()
    k = _speculative_tokens(text)
    named = _DRAFT_NAME.match(text)
    draft = named[1] if named is not None and known_model(named[1]) else None
    method = None if draft else next((m for word, m in _METHOD_WORDS if word in low), None)
    if method is None and draft is None:
        draft = _named_draft(text, known_model)  # a draft model named anywhere, no other method said
    if draft is not None:
        if k is None:
            raise field_error("serving.speculative", quote(text), "num_speculative_tokens with the draft model")
        method = SpecMethod.DRAFT
    if method is None or k is None:
        raise field_error(
            "serving.speculative", quote(text),
            "a method (a catalog draft model, eagle, eagle3, medusa, mtp, ngram) and the speculative tokens per "
            "step (num_speculative_tokens, speculation_length, max_draft_len, ...)",
        )  # fmt: skip
    rate, length = _RATE.search(text), _LENGTH.search(text)
    accept = None
    if rate and not length:
        accept = float(rate[1]) / 100 if rate[2] or float(rate[1]) > 1 else float(rate[1])
    return Speculation(
        method=method,
        num_tokens=k,
        acceptance_length=float(length[1]) if length else None,
        acceptance_rate=accept,
        draft_model=draft,
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class SpeculativeCost:
    """A replica's iteration cost under speculative decoding, for the simulator (``serve.simulate``).

    The engine counts one token per decoding sequence per iteration; a speculative step yields ``tau`` tokens
    (``Speculation.tokens_per_step``), so an iteration here is ``1 / tau`` of a step: its decode part is the
    drafter's passes plus the ``k + 1``-token verification, over ``tau``. Throughput and mean TPOT are exact
    under that reading; a prompt prefilled beside the decodes is charged in full (not over ``tau``).
    """

    cost: ReplicaCost
    drafter: ReplicaCost | None
    spec: Speculation

    @property
    def kv_capacity_tokens(self) -> int:
        return self.cost.kv_capacity_tokens

    @property
    def kv_bytes_per_token(self) -> float:
        return self.cost.kv_bytes_per_token

    @property
    def max_batch(self) -> int:
        return self.cost.max_batch

    @property
    def replica_devices(self) -> int:
        return self.cost.replica_devices

    @property
    def buckets(self) -> Buckets | None:
        return self.cost.buckets

    def iteration_s(
        self, prefill_tokens: int, decode_seqs: int, kv_tokens: int, prefill_seqs: int = 1, cached_tokens: int = 0
    ) -> float:
        if decode_seqs == 0:
            return self.cost.iteration_s(prefill_tokens, 0, kv_tokens, prefill_seqs, cached_tokens)
        prefill = {}
        if prefill_tokens:
            prefill = self.cost.parts(prefill_tokens, 0, 0, prefill_seqs, cached_tokens=cached_tokens)
        overhead = self.cost.eff.iteration_overhead_s
        step = speculative_step_s(self.cost, self.drafter, self.spec, decode_seqs, kv_tokens) - overhead
        step /= self.spec.tokens_per_step
        if not prefill_tokens:  # the step's one host overhead is spread over its tau engine iterations too
            return overhead / self.spec.tokens_per_step + step
        draft_prefill = drafter_prefill_s(self.drafter, self.spec, prefill_tokens, prefill_seqs, cached_tokens)
        return overhead + sum(prefill.values()) - prefill["overhead"] + draft_prefill + step


def speculative_step_s(
    cost: ReplicaCost, drafter: ReplicaCost | None, spec: Speculation, decode_seqs: int, kv_tokens: int
) -> float:
    """One speculative step of ``decode_seqs`` sequences holding ``kv_tokens``: the step's launch and host work
    (``iteration_overhead_s``, twice with a separately launched drafter, and ``sequence_overhead_s`` per request),
    the ``k + 1``-token verification, and the drafter's sequential passes, each with its own layers' collectives at
    the target's tensor parallelism."""
    launches = 2 if spec.separate_launch and drafter is not None else 1
    verify = cost.pass_s(decode_seqs, kv_tokens, queries=spec.verified_tokens)
    draft = spec.draft_passes * (drafter.pass_s(decode_seqs, kv_tokens) if drafter is not None else 0.0)
    host = launches * cost.eff.iteration_overhead_s + cost.request_overhead_s * decode_seqs
    return host + verify + draft


def drafter_prefill_s(
    drafter: ReplicaCost | None, spec: Speculation, prefill_tokens: int, prefill_seqs: int, cached_tokens: int = 0
) -> float:
    """The drafter's pass over new prompt tokens (its own KV cache), paid before the first token; a separately
    launched drafter adds its launch."""
    if drafter is None or prefill_tokens == 0:
        return 0.0
    parts = drafter.parts(prefill_tokens, 0, 0, prefill_seqs, cached_tokens=cached_tokens)
    launch = parts["overhead"] if spec.separate_launch else 0.0
    return sum(parts.values()) - parts["overhead"] + launch
