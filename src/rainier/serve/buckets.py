"""Compiled sequence buckets: the padded lengths a Neuron runtime computes instead of the real ones.

The Neuron compiler builds executables for static shapes, so Neuron's inference runtimes (NxD Inference,
transformers-neuronx, and vLLM on Neuron through them) compile one program per *bucket* of sequence length and
run each request at the smallest bucket that holds it, padding the rest (aws-neuron-sdk,
``libraries/nxd-inference/developer_guides/feature-guide.rst``, "Bucketing"):

- context encoding (the prefill) runs at the smallest bucket >= the prompt: the padded positions go through every
  GEMM, collective and attention like real tokens;
- token generation (a decode step) attends over the smallest bucket >= the sequence so far: the KV cache is read
  over the whole bucket, padding masked out.

With automatic bucketing the buckets are the powers of two from 128 up to the maximum length, that length itself
the last one ("Automatic Bucketing": context encoding and token generation alike). With bucketing disabled there
is one bucket, the maximum length, and every prompt and every step pays for all of it.
GPU engines (TensorRT-LLM, vLLM, SGLang) run the real lengths: no buckets.

Static batches (``serve estimate``, the static validation cases) are padded, and so are ``serve size``'s layouts
and the simulator's Neuron replicas (``ReplicaCost.buckets``): a continuous batch's decode step reads every
sequence's cache over the bucket of its longest (``serve size`` takes that as the longest context, which a loaded
replica stays near; the simulator tracks it), and a prompt prefilled whole runs at its bucket (in the simulator's
static batches, every prompt at the bucket of the batch's longest). The chunks of a prompt split across
iterations run their real lengths.
"""

from __future__ import annotations

from dataclasses import dataclass

from rainier.errors import field_error
from rainier.hardware import Accelerator
from rainier.hardware.accelerator import Vendor

SMALLEST_BUCKET = 128  # NxD Inference's automatic buckets start at 128 tokens


@dataclass(frozen=True, slots=True)
class Buckets:
    """The compiled lengths of one model on a Neuron runtime: powers of two from 128 to ``max_len`` (``auto``),
    or ``max_len`` alone (bucketing disabled)."""

    max_len: int
    auto: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.max_len, bool) or not isinstance(self.max_len, int) or self.max_len < 1:
            raise field_error("buckets.max_len", self.max_len, "a whole number of tokens, at least 1")

    def pad(self, length: int) -> int:
        """The bucket a sequence of ``length`` tokens runs at; a length beyond the largest bucket runs unpadded
        (no compiled program holds it: the runtime would refuse it, the estimate keeps its real length)."""
        if length >= self.max_len or not self.auto:
            return max(length, self.max_len)
        bucket = SMALLEST_BUCKET if length <= SMALLEST_BUCKET else 1 << (length - 1).bit_length()
        return min(bucket, self.max_len)

    def segments(self, first: int, last: int) -> list[tuple[int, int]]:
        """``(length, steps)`` covering the lengths ``first..last`` (inclusive), in order: a decode phase whose cache
        grows from ``first`` to ``last`` tokens runs ``steps`` steps over a cache of ``length`` (its bucket; past the
        largest bucket, where lengths run unpadded, one segment at their mean, rounded)."""
        if last < first:
            raise field_error("buckets.last", last, f"at least first = {first}")
        out: list[tuple[int, int]] = []
        length = first
        while length <= last:
            if length >= self.max_len:
                out.append((round((length + last) / 2), last - length + 1))
                break
            bucket = self.pad(length)  # every length up to the bucket pads to it
            end = min(last, bucket)
            out.append((bucket, end - length + 1))
            length = end + 1
        return out


def runtime_buckets(accelerator: Accelerator, max_len: int, *, enabled: bool = True) -> Buckets | None:
    """The buckets a model of ``max_len`` tokens runs in on ``accelerator``'s runtime: Neuron's (AWS chips), with
    automatic bucketing unless ``enabled`` is False (one bucket of ``max_len``); None for GPU and TPU engines."""
    if accelerator.vendor is not Vendor.AWS:
        return None
    return Buckets(max_len=max_len, auto=enabled)
