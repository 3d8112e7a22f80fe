"""Scenario files: every input of a fleet study in one YAML file a user can copy and edit.

``rainier fleet scenario examples/rainier-frontier.yaml`` (and ``make demo``) reads one; it is the ``kind: fleet``
(the default) of the one scenario format (:mod:`rainier.api.scenario`), with an optional ``version: 1``. Keys::

    model: frontier-2t-moe          # catalog name or a Hugging Face config.json path
    tokens: 15.0e12
    cluster: rainier-trn2-500k      # or accelerator: trn2 with count: 65536
    plan: null                      # null: search for the fastest plan
    gbs: null                       # exact global batch in sequences, or
    batch_tokens: null              # a batch target in tokens; both null: DeepSeek LLM's batch law
    gbs_tolerance: null             # a target's relative tolerance (train search's rule); null: 0.05 (+-5%)
    price: null                     # USD per device-hour: a number or {trn2: 1.5, h100-sxm: 4.9}
    precision: null                 # the run's training precision: bf16, fp8 or best (the chip's best); null: search
    failures: {seed: 1, simulate_days: null, checkpoint_interval_min: null, hot_spares: false,
               in_memory_checkpoint: false}
    compare: {accelerators: [trn3, gb200], at: power, precision: null, idle_share: 0.05}

Unknown keys, wrong types and numbers out of range (:mod:`rainier.fleet.limits`) are one-line errors naming the
file, the field, the value (clipped) and what is allowed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rainier.catalog.loader import CatalogError, load_yaml
from rainier.errors import InputError, clip_path, quote
from rainier.fleet.compare import Comparison
from rainier.fleet.footing import DEFAULT_IDLE_SHARE, MAX_IDLE_SHARE
from rainier.fleet.goodput import GoodputResult
from rainier.fleet.limits import (
    MAX_BATCH_TOKENS,
    MAX_CHECKPOINT_INTERVAL_MIN,
    MAX_DAYS,
    MAX_DEVICES,
    MAX_GBS,
    MAX_SEED,
    MAX_TOKENS,
    MAX_USD_PER_DEVICE_HOUR,
    MIN_TOKENS,
)
from rainier.fleet.plan import RunPlan
from rainier.hardware import get_accelerator
from rainier.parallel.batch_target import MAX_TOLERANCE
from rainier.precision import Precision


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
    gbs_tolerance: float | None = None  # a batch target's relative tolerance; None: the default (+-5%)
    price: str | None = None
    precision: str | None = None  # the run's training precision (``best``: the chip's best); None: the search's
    failures: bool = True
    seed: int = 1
    simulate_days: float | None = None
    checkpoint_interval_min: float | None = None
    hot_spares: bool = False
    in_memory_checkpoint: bool = False
    compare: tuple[str, ...] = ()
    compare_at: str = "power"
    compare_precision: str | None = None  # None: each chip's best training precision
    compare_idle_share: float = DEFAULT_IDLE_SHARE
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
            "gbs_tolerance": self.gbs_tolerance,
            "price": self.price,
            "precision": self.precision,
            "failures": self.failures,
            "seed": self.seed,
            "simulate_days": self.simulate_days,
            "checkpoint_interval_min": self.checkpoint_interval_min,
            "hot_spares": self.hot_spares,
            "in_memory_checkpoint": self.in_memory_checkpoint,
            "compare": list(self.compare),
            "compare_at": self.compare_at,
            "compare_precision": self.compare_precision,
            "compare_idle_share": self.compare_idle_share,
        }


VERSION = 1  # the scenario format's version (rainier.api.scenario): optional on read
TOP_KEYS = (
    "kind",
    "version",
    "title",
    "model",
    "tokens",
    "cluster",
    "accelerator",
    "count",
    "plan",
    "gbs",
    "batch_tokens",
    "gbs_tolerance",
    "price",
    "precision",
    "failures",
    "compare",
)
FAILURE_KEYS = ("enabled", "seed", "simulate_days", "checkpoint_interval_min", "hot_spares", "in_memory_checkpoint")
COMPARE_KEYS = ("accelerators", "at", "precision", "idle_share")
COMPARE_AT = ("power", "devices")
MAX_TEXT = 1_000  # characters of a name, plan or title (a catalog name or a Hugging Face path is far shorter)
MAX_COMPARED = 16  # accelerators in one comparison (the catalog has about a dozen)


class _Reader:
    """Checks one mapping of a scenario file: each field's type and range, then that no unknown key is left.

    Every problem is one :class:`CatalogError` line: ``FILE: scenario: key=value is invalid: what is allowed``,
    with the value clipped (:func:`rainier.errors.quote`).
    """

    def __init__(self, data: object, *, path: str, where: str, keys: tuple[str, ...]) -> None:
        self.path = path
        self.where = where
        if not isinstance(data, Mapping):
            raise self.error(f"expected a mapping of {', '.join(keys)}; got {type(data).__name__}")
        self.data = {str(key): value for key, value in data.items()}
        unknown = sorted(set(self.data) - set(keys))
        if unknown:
            names = ", ".join(quote(name, 40) for name in unknown[:5]) + (" ..." if len(unknown) > 5 else "")
            raise self.error(f"unknown field(s) {names}; allowed: {', '.join(keys)}")

    def error(self, message: str) -> CatalogError:
        return CatalogError(f"{self.path}: {self.where}: {message}")

    def invalid(self, key: str, value: object, allowed: str) -> CatalogError:
        return self.error(f"{key}={quote(value)} is invalid: {allowed}")

    def get(self, key: str) -> object:
        return self.data.get(key)

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None or value == "":
            if required:
                raise self.error(f"missing required field '{key}'")
            return None
        if not isinstance(value, str):
            raise self.invalid(key, value, "expected text")
        if len(value) > MAX_TEXT:
            raise self.invalid(key, value, f"text of at most {MAX_TEXT:,} characters")
        return value

    def number(self, key: str, low: float, high: float, *, what: str, low_open: bool = False) -> float | None:
        """A number in range, or ``None`` when absent; YAML 1.1 reads ``15e12`` as text, so numeric text counts."""
        value = self.data.get(key)
        if value is None:
            return None
        number = _as_number(value)
        below = number <= low if low_open else number < low
        if not math.isfinite(number) or below or number > high:
            lower = f"above {low:g}" if low_open else f"from {low:g}"
            raise self.invalid(key, value, f"{what} {lower} to {high:g}")
        return number

    def integer(self, key: str, low: int, high: int, *, what: str) -> int | None:
        """An integer in range (``65536``, or a whole number such as ``1e6``), or ``None`` when absent."""
        value = self.data.get(key)
        if value is None:
            return None
        number = _as_number(value)
        if not (math.isfinite(number) and number == int(number) and low <= number <= high):
            raise self.invalid(key, value, f"{what}: an integer from {low:,} to {high:,}")
        return int(number)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.data.get(key)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.invalid(key, value, "true or false")
        return value

    def sub(self, key: str, keys: tuple[str, ...]) -> _Reader | None:
        value = self.data.get(key)
        if value is None:
            return None
        return _Reader(value, path=self.path, where=f"{self.where}.{key}", keys=keys)


def _as_number(value: object) -> float:
    """``value`` as a float (nan when it is no number: a bool, a list, text that is not numeric)."""
    if isinstance(value, bool):
        return math.nan
    if isinstance(value, int):
        return float(value) if abs(value) < 2**1000 else math.inf
    if isinstance(value, float):
        return value
    if isinstance(value, str) and len(value) <= 64:
        try:
            return float(value.strip().replace("_", ""))
        except ValueError:
            return math.nan
    return math.nan


def load_scenario(path: Path | str) -> Scenario:
    """Read and check a scenario file (module docstring): every field's type and range, no unknown key."""
    return scenario_from_mapping(load_yaml(path), path=path)


def scenario_from_mapping(raw: object, *, path: Path | str) -> Scenario:
    """A fleet scenario from a parsed YAML document (``path`` names it in messages)."""
    where = clip_path(path)
    if raw is None:
        raise CatalogError(f"{where}: scenario: empty file; expected a mapping with model, tokens and cluster")
    top = _Reader(raw, path=where, where="scenario", keys=TOP_KEYS)
    kind = top.get("kind")
    if kind is not None and kind != "fleet":
        raise top.invalid("kind", kind, "fleet (a training, serve or sweep scenario is read by rainier report)")
    version = top.get("version")
    if version is not None and (isinstance(version, bool) or version != VERSION):
        raise top.invalid("version", version, f"{VERSION} (the scenario format's version)")
    model = top.text("model", required=True)
    if top.get("tokens") is None:
        raise top.error("missing required field 'tokens'")
    tokens = top.number("tokens", MIN_TOKENS, MAX_TOKENS, what="training tokens")
    cluster = top.text("cluster")
    accelerator = top.text("accelerator")
    count = top.integer("count", 1, MAX_DEVICES, what="devices")
    if (cluster is None) == (accelerator is None):
        raise top.error("give cluster, or accelerator with count (exactly one of cluster and accelerator)")
    if cluster is not None and count is not None:
        raise top.error("count goes with accelerator; a named cluster has its own size")
    if accelerator is not None and count is None:
        raise top.error("accelerator needs count (the number of devices)")
    gbs = top.integer("gbs", 1, MAX_GBS, what="sequences per step")
    batch_tokens = top.number("batch_tokens", 1.0, MAX_BATCH_TOKENS, what="tokens per step")
    if gbs is not None and batch_tokens is not None:
        raise top.error("give gbs (sequences) or batch_tokens, not both")
    gbs_tolerance = top.number("gbs_tolerance", 0.0, MAX_TOLERANCE, what="a fraction of the batch target (0.05 = +-5%)")
    if gbs is not None and gbs_tolerance is not None:
        raise top.error("gbs is an exact batch: gbs_tolerance goes with batch_tokens or the batch law")
    failures = top.sub("failures", FAILURE_KEYS)
    enabled, seed, days, interval, hot_spares, in_memory = True, 1, None, None, False, False
    if failures is not None:
        enabled = failures.boolean("enabled", True)
        hot_spares = failures.boolean("hot_spares", False)
        in_memory = failures.boolean("in_memory_checkpoint", False)
        given_seed = failures.integer("seed", 0, MAX_SEED, what="random seed")
        seed = 1 if given_seed is None else given_seed
        days = failures.number("simulate_days", 0.0, MAX_DAYS, what="days", low_open=True)
        interval = failures.number(
            "checkpoint_interval_min", 0.0, MAX_CHECKPOINT_INTERVAL_MIN, what="minutes", low_open=True
        )
    accelerators, at, precision, idle_share = _compare(top)
    assert model is not None and tokens is not None  # required above
    return Scenario(
        title=top.text("title") or "",
        path=str(path),
        model=model,
        tokens=tokens,
        cluster=cluster,
        accelerator=accelerator,
        count=count,
        plan=top.text("plan"),
        gbs=gbs,
        batch_tokens=batch_tokens,
        gbs_tolerance=gbs_tolerance,
        price=_price_text(top),
        precision=_run_precision(top),
        failures=enabled,
        seed=seed,
        simulate_days=days,
        checkpoint_interval_min=interval,
        hot_spares=hot_spares,
        in_memory_checkpoint=in_memory,
        compare=accelerators,
        compare_at=at,
        compare_precision=precision,
        compare_idle_share=idle_share,
    )


def _compare(top: _Reader) -> tuple[tuple[str, ...], str, str | None, float]:
    """``compare: {accelerators: [trn3, gb200], at: power, precision: fp8, idle_share: 0.05}`` -> (accelerator
    ids, power or devices, a forced precision or None, the idle share sizing may leave)."""
    compare = top.sub("compare", COMPARE_KEYS)
    if compare is None:
        return (), "power", None, DEFAULT_IDLE_SHARE
    items = compare.get("accelerators")
    if items is None:
        items = []
    if not isinstance(items, list) or len(items) > MAX_COMPARED:
        raise compare.invalid("accelerators", items, f"a list of up to {MAX_COMPARED} accelerator ids")
    for item in items:
        if not isinstance(item, str) or not item.strip() or len(item) > MAX_TEXT:
            raise compare.invalid("accelerators", item, "accelerator ids (text), e.g. [trn3, h100-sxm]")
    at = compare.text("at") or "power"
    if at not in COMPARE_AT:
        raise compare.invalid("at", at, " or ".join(COMPARE_AT))
    precision = compare.text("precision")
    if precision is not None and precision.strip().lower() not in {p.value for p in Precision}:
        raise compare.invalid("precision", precision, ", ".join(p.value for p in Precision))
    idle = compare.number("idle_share", 0.0, MAX_IDLE_SHARE, what="a fraction of devices")
    return (
        tuple(items),
        at,
        None if precision is None else precision.strip().lower(),
        DEFAULT_IDLE_SHARE if idle is None else idle,
    )


def _price_text(top: _Reader) -> str | None:
    """``price: 2.5`` or ``price: {trn2: 1.5}`` (USD per device-hour, in range) as the ``--price`` text."""
    value = top.get("price")
    if value is None:
        return None
    if isinstance(value, list | tuple) or (isinstance(value, Mapping) and not value):
        raise top.invalid(
            "price", value, "USD per device-hour: a number, or a mapping such as {trn2: 1.5, h100-sxm: 4.9}"
        )
    if isinstance(value, Mapping):
        prices = top.sub("price", tuple(str(key) for key in value))
        assert prices is not None
        parts: dict[str, str] = {}
        for name in prices.data:
            try:
                accelerator = get_accelerator(name).id
            except InputError as exc:
                raise prices.error(str(exc)) from None
            if accelerator in parts:
                raise prices.invalid(name, prices.get(name), f"one price per accelerator ({accelerator} has one)")
            amount = prices.number(name, 0.0, MAX_USD_PER_DEVICE_HOUR, what="USD per device-hour", low_open=True)
            parts[accelerator] = f"{accelerator}={amount!r}"
        return ",".join(parts.values())
    amount = top.number("price", 0.0, MAX_USD_PER_DEVICE_HOUR, what="USD per device-hour", low_open=True)
    return repr(amount)


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


def _run_precision(top: Any) -> str | None:
    """``precision:`` of the run: bf16, fp8 (any precision the catalog names) or ``best``; None when absent."""
    text = top.text("precision")
    if text is None or text.strip().lower() == "best":
        return None if text is None else "best"
    try:
        return Precision.parse(text).value
    except ValueError:
        raise top.invalid("precision", text, "bf16, fp8, ... or best (the chip's best)") from None
