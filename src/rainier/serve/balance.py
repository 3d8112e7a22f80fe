"""TensorRT-LLM's ADP balance: new prompts held back so that the data-parallel attention ranks prefill together.

Under data-parallel attention every rank serves its own requests, and an iteration lasts as long as its busiest rank
(``serve.cost``, ``busiest_share``): one rank prefilling while the others decode holds them all. TensorRT-LLM's
PyTorch executor can therefore hold new prompts back (``attention_dp_config: enable_balance``; MLPerf Inference
v5.1 NVIDIA configs ``adp_balancing_enable``): they wait until every rank has one, up to ``timeout_iters``
iterations, and then ``batching_wait_iters`` more while every rank is decoding, so that ranks prefill alike
(TensorRT-LLM tech blog 10, "ADP Balance Strategy", 2025: DeepSeek-V3 on 8 GB200, 803 tokens in and 3,653 out,
25,664 -> 34,140 output tokens/s). The price is time to first token: a prompt that arrives alone waits for the
next timeout. Each engine applies the rule (``serve.engine._Balancing.hold``); this module holds its two
settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rainier.errors import field_error

MAX_WAIT_ITERS = 100_000


@dataclass(frozen=True, slots=True)
class AdpBalance:
    """The two counters' limits of TensorRT-LLM's ``attention_dp_config`` (its defaults: 10 and 50)."""

    batching_wait_iters: int = 10
    timeout_iters: int = 50

    def __post_init__(self) -> None:
        for name in ("batching_wait_iters", "timeout_iters"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_WAIT_ITERS:
                allowed = f"a whole number of iterations, 0 to {MAX_WAIT_ITERS:,}"
                raise field_error(f"adp_balance.{name}", value, allowed)

    @classmethod
    def parse(cls, text: str, field: str = "adp-balance") -> AdpBalance:
        """``WAIT,TIMEOUT`` (``--adp-balance 3,9``), or ``default`` for TensorRT-LLM's 10,50."""
        key = text.strip().lower()
        if key in ("default", "on"):
            return cls()
        parts = [p.strip() for p in key.split(",")]
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            raise field_error(field, text, "BATCHING_WAIT_ITERS,TIMEOUT_ITERS (e.g. 3,9) or 'default' (10,50)")
        return cls(batching_wait_iters=int(parts[0]), timeout_iters=int(parts[1]))

    @classmethod
    def from_case(cls, value: Any, field: str = "serving.adp_balance") -> AdpBalance | None:
        """A case's ``serving.adp_balance``: null/absent (off), or a mapping with ``batching_wait_iters`` and
        ``timeout_iters``."""
        if value is None or value is False:
            return None
        allowed = "a mapping with batching_wait_iters and timeout_iters (whole iterations), or null"
        if not isinstance(value, dict) or set(value) - {"batching_wait_iters", "timeout_iters"}:
            raise field_error(field, value, allowed)
        try:
            return cls(**{k: value[k] for k in ("batching_wait_iters", "timeout_iters") if k in value})
        except ValueError:
            raise field_error(field, value, allowed) from None

    def to_dict(self) -> dict[str, int]:
        return {"batching_wait_iters": self.batching_wait_iters, "timeout_iters": self.timeout_iters}
