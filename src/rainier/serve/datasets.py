"""Request-length mixes of public serving benchmarks: the per-sample token counts of their datasets.

A benchmark's requests are not all the mean. MLPerf's DeepSeek-R1 set has a median output of 2,194 reference
tokens and a mean of 4,043 (coefficient of variation 1.25); its Llama 3.1 405B prompts run from a few hundred to
20,000 tokens. That spread is physics, not noise, for an in-flight engine:

- a running sequence is a length-biased draw: the time-average context of the batch is ``E[in] + E[out^2] / 2 E[out]``
  (Little's law over each request's lifetime), 2.6 times the fixed-length value's output part for DeepSeek-R1, so
  attention reads and the KV cache a batch holds grow with it;
- the longest prompts set a server's TTFT p99 and the longest outputs the drain of an offline run;
- one long prompt admitted whole takes an iteration the decodes beside it wait for.

``catalog/datasets.yaml`` lists the mixes rainier ships (each with its source), ``datasets/<file>`` holds the
samples. A simulation draws requests' lengths from a mix with replacement and scales them to the means it states
(``LengthSamples.draw``): inputs by the ratio of means, outputs likewise and capped at the benchmark's
``max_output_len``, the scale chosen so the capped mean is the one stated. Where the dataset's output column is not
a token count (``outputs: none``), every request generates the stated mean.
"""

from __future__ import annotations

import functools
import gzip
import io
from dataclasses import dataclass, field

import numpy as np

from rainier.catalog import Fields, Registry, catalog_file, load_entries
from rainier.errors import field_error
from rainier.serve.limits import MAX_TOKENS

OUTPUT_KINDS = ("tokens", "none")
MAX_SAMPLES = 1_000_000
SCALE_STEPS = 60  # bisection steps for the output scale (to well below one token)


@dataclass(frozen=True, eq=False, kw_only=True)
class LengthSamples:
    """One benchmark's per-sample input and output token counts (``catalog/datasets.yaml``).

    Equal and hashed by id: a catalog mix is loaded once, and a simulation's cache key holds it by name."""

    id: str
    title: str
    inputs: np.ndarray = field(repr=False)
    outputs: np.ndarray | None = field(repr=False)  # None: the dataset's output column is not a token count
    max_output_len: int

    def __hash__(self) -> int:
        return hash(("LengthSamples", self.id))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LengthSamples) and other.id == self.id

    @property
    def mean_input(self) -> float:
        return float(self.inputs.mean())

    @property
    def mean_output(self) -> float | None:
        return float(self.outputs.mean()) if self.outputs is not None else None

    def draw(
        self, rng: np.random.Generator, n: int, input_mean: int, output_mean: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` requests' (input, output) lengths drawn from the samples with replacement, scaled to the means."""
        picks = rng.integers(0, self.inputs.size, size=n)
        inputs = np.maximum(1, np.rint(self.inputs[picks] * (input_mean / self.mean_input))).astype(np.int64)
        if self.outputs is None:
            return inputs, np.full(n, output_mean, dtype=np.int64)
        scale = _output_scale(self, output_mean)
        outputs = _scaled_outputs(self.outputs[picks], scale, self.max_output_len)
        return inputs, outputs

    def longest_output(self, output_mean: int) -> int:
        """The longest output a draw at ``output_mean`` generates: the dataset's longest sample scaled as ``draw``
        scales it, within the benchmark's cap (``output_mean`` itself where the outputs are not token counts)."""
        if self.outputs is None:
            return output_mean
        scale = _output_scale(self, output_mean)
        return int(_scaled_outputs(self.outputs.max(keepdims=True), scale, self.max_output_len)[0])

    def describe(self) -> dict[str, object]:
        mean_output = self.mean_output
        return {
            "id": self.id,
            "title": self.title,
            "samples": int(self.inputs.size),
            "mean_input": round(self.mean_input, 1),
            "mean_output": round(mean_output, 1) if mean_output is not None else None,
            "max_output_len": self.max_output_len,
        }


def _scaled_outputs(outputs: np.ndarray, scale: float, cap: int) -> np.ndarray:
    return np.clip(np.rint(outputs * scale), 1, cap).astype(np.int64)


@functools.lru_cache(maxsize=256)
def _output_scale(samples: LengthSamples, output_mean: int) -> float:
    """The factor on the dataset's outputs whose capped mean is ``output_mean`` (bisection; the capped mean grows
    with the factor). A mean at or above the cap is every request at the cap."""
    assert samples.outputs is not None
    if output_mean >= samples.max_output_len:
        raise field_error(
            "lengths",
            samples.id,
            f"an output mean below the dataset's cap of {samples.max_output_len} tokens (asked {output_mean})",
        )
    low, high = 0.0, float(samples.max_output_len)
    for _ in range(SCALE_STEPS):
        mid = (low + high) / 2.0
        if _scaled_outputs(samples.outputs, mid, samples.max_output_len).mean() < output_mean:
            low = mid
        else:
            high = mid
    return (low + high) / 2.0


def _build(fields: Fields) -> LengthSamples:
    dataset_id = fields.string("id")
    file_name = fields.string("file")
    count = fields.integer("samples", maximum=MAX_SAMPLES)
    kind = fields.choice("outputs", OUTPUT_KINDS)
    cap = fields.integer("max_output_len", maximum=MAX_TOKENS)
    with gzip.open(catalog_file("datasets").joinpath(file_name), "rt", encoding="ascii") as handle:
        header, _, body = handle.read().partition("\n")
    if header.strip() != "input_length,output_length":
        raise fields.error(f"{file_name}: expected a CSV with the header input_length,output_length")
    table = np.loadtxt(io.StringIO(body), delimiter=",", dtype=np.int64, ndmin=2)
    inputs, outputs = table[:, 0], table[:, 1]
    if inputs.size != count:
        raise fields.error(f"{file_name} holds {inputs.size} samples, the entry states {count}")
    if inputs.min() < 1 or outputs.min() < 1:
        raise fields.error(f"{file_name}: every length must be at least 1 token")
    inputs.setflags(write=False)
    outputs.setflags(write=False)
    return LengthSamples(
        id=dataset_id,
        title=fields.string("title"),
        inputs=inputs,
        outputs=outputs if kind == "tokens" else None,
        max_output_len=cap,
    )


@functools.cache
def dataset_registry() -> Registry[LengthSamples]:
    """The shipped mixes by id (``catalog/datasets.yaml``)."""
    return Registry("dataset", load_entries(catalog_file("datasets.yaml"), "datasets", _build, id_of=lambda d: d.id))


def length_samples(name: str) -> LengthSamples:
    """A shipped mix by id; an unknown one is an ``UnknownNameError`` naming the ids there are."""
    return dataset_registry().get(name)


def named_dataset(field: str, name: object, *also: str) -> LengthSamples:
    """The mix an input ``field`` names; anything else is a one-line error naming the field, the value and the ids
    there are (after ``also``, other values the field takes)."""
    known = ", ".join([*also, *dataset_registry().ids()])
    if not isinstance(name, str) or name.strip().lower() not in dataset_registry():
        raise field_error(field, name, known)
    return length_samples(name)


DEFAULT_INPUT_LEN, DEFAULT_OUTPUT_LEN = 1024, 256  # mean request lengths when neither they nor a mix are given


def request_means(samples: LengthSamples | None, input_len: int | None, output_len: int | None) -> tuple[int, int]:
    """The mean lengths a load runs at: those given, else the mix's (its cap where its outputs are not token
    counts: a benchmark that caps generation runs to it), else ``DEFAULT_INPUT_LEN`` and ``DEFAULT_OUTPUT_LEN``."""
    if input_len is None:
        input_len = round(samples.mean_input) if samples is not None else DEFAULT_INPUT_LEN
    if output_len is None:
        if samples is None:
            output_len = DEFAULT_OUTPUT_LEN
        else:
            mean = samples.mean_output
            output_len = round(mean) if mean is not None else samples.max_output_len
    return input_len, output_len
