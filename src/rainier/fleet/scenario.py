"""Scenario files: every input of a fleet study in one YAML file a user can copy and edit.

``rainier fleet scenario examples/rainier-frontier.yaml`` (and ``make demo``) reads one. Keys::

    model: frontier-2t-moe          # catalog name or a Hugging Face config.json path
    tokens: 15.0e12
    cluster: rainier-trn2-500k      # or accelerator: trn2 with count: 65536
    plan: null                      # null: search for the fastest plan
    gbs: null                       # exact global batch in sequences, or
    batch_tokens: null              # a batch target in tokens; both null: DeepSeek LLM's batch law
    price: null                     # USD per device-hour: a number or {trn2: 1.5, h100-sxm: 4.9}
    failures: {seed: 1, simulate_days: null, checkpoint_interval_min: null}
    compare: {accelerators: [trn3, gb200], at: power}

Unknown keys and malformed values are one-line errors naming the file and the field.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rainier.catalog.loader import CatalogError, Fields, load_yaml
from rainier.fleet.compare import Comparison
from rainier.fleet.goodput import GoodputResult
from rainier.fleet.plan import RunPlan


@dataclass(frozen=True, slots=True, kw_only=True)
class Scenario:
    """A fleet study: one run, its failures, and the same run on other accelerators."""

    model: str
    tokens: float
    cluster: str | None = None
    accelerator: str | None = None
    count: int | None = None
    plan: str | None = None
    gbs: int | None = None
    batch_tokens: float | None = None
    price: str | None = None
    failures: bool = True
    seed: int = 1
    simulate_days: float | None = None
    checkpoint_interval_min: float | None = None
    compare: tuple[str, ...] = ()
    compare_at: str = "power"
    title: str = ""
    path: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "path": self.path,
            "model": self.model,
            "tokens": self.tokens,
            "cluster": self.cluster,
            "accelerator": self.accelerator,
            "count": self.count,
            "plan": self.plan,
            "gbs": self.gbs,
            "batch_tokens": self.batch_tokens,
            "price": self.price,
            "failures": self.failures,
            "seed": self.seed,
            "simulate_days": self.simulate_days,
            "checkpoint_interval_min": self.checkpoint_interval_min,
            "compare": list(self.compare),
            "compare_at": self.compare_at,
        }


def load_scenario(path: Path | str) -> Scenario:
    """Read and check a scenario file (module docstring)."""
    raw = load_yaml(path)
    reader = Fields(raw if raw is not None else {}, path=path, where="scenario", sources=None)
    title = reader.string("title", required=False)
    model = reader.string("model")
    tokens = _number(reader, "tokens")
    cluster = reader.string("cluster", required=False) or None
    accelerator = reader.string("accelerator", required=False) or None
    count = reader.integer("count", required=False, default=0, sourced=False) or None
    plan = reader.string("plan", required=False) or None
    gbs = reader.integer("gbs", required=False, default=0, sourced=False) or None
    batch_tokens = _number(reader, "batch_tokens", required=False)
    price = _price_text(reader)
    failures = reader.sub("failures", required=False)
    enabled, seed, days, interval = True, 1, None, None
    if failures is not None:
        enabled = failures.boolean("enabled", required=False, default=True)
        seed = failures.integer("seed", required=False, default=1, minimum=0, sourced=False)
        days = failures.optional_number("simulate_days", sourced=False)
        interval = failures.optional_number("checkpoint_interval_min", sourced=False)
        failures.finish()
    compare = reader.sub("compare", required=False)
    accelerators: tuple[str, ...] = ()
    at = "power"
    if compare is not None:
        items = compare.items("accelerators", required=False)
        if not all(isinstance(item, str) and item for item in items):
            raise compare.error(f"accelerators={items!r} is invalid: a list of accelerator ids")
        accelerators = tuple(items)
        at = compare.choice("at", ("power", "devices"), required=False, default="power")
        compare.finish()
    reader.finish()
    if (cluster is None) == (accelerator is None):
        raise CatalogError(f"{path}: scenario: give cluster, or accelerator with count (exactly one)")
    return Scenario(
        title=title,
        path=str(path),
        model=model,
        tokens=tokens,
        cluster=cluster,
        accelerator=accelerator,
        count=count,
        plan=plan,
        gbs=gbs,
        batch_tokens=batch_tokens,
        price=price,
        failures=enabled,
        seed=seed,
        simulate_days=days,
        checkpoint_interval_min=interval,
        compare=accelerators,
        compare_at=at,
    )


def _number(reader: Fields, key: str, *, required: bool = True) -> Any:
    """A positive number; YAML 1.1 reads ``15e12`` (no sign, no dot) as text, so numeric text is accepted too."""
    raw = reader.peek(key)
    if isinstance(raw, str):
        reader.string(key)
        try:
            value = float(raw)
        except ValueError:
            raise reader.error(f"{key}={raw!r} is invalid: expected a number such as 15e12") from None
        if not value > 0 or value == float("inf"):
            raise reader.error(f"{key}={raw!r} is invalid: must be > 0")
        return value
    if not required and not reader.has(key):
        return reader.optional_number(key, sourced=False)
    return reader.number(key, sourced=False)


def _price_text(reader: Fields) -> str | None:
    """``price: 2.5`` or ``price: {trn2: 1.5}`` as the ``--price`` text the API parses."""
    if not reader.has("price"):
        reader.string("price", required=False)
        return None
    value = reader.mapping("price") if isinstance(reader.peek("price"), dict) else None
    if value is not None:
        return ",".join(f"{name}={amount}" for name, amount in value.items())
    return str(reader.number("price", sourced=False))


@dataclass(frozen=True, slots=True, kw_only=True)
class ScenarioResult:
    """A scenario's run (wall clock from the seeded failure simulation), the simulation, and the comparison."""

    scenario: Scenario
    run: RunPlan
    goodput: GoodputResult | None
    comparison: Comparison | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.to_dict(),
            "run": self.run.to_dict(),
            "goodput": None if self.goodput is None else self.goodput.to_dict(),
            "comparison": None if self.comparison is None else self.comparison.to_dict(),
        }
