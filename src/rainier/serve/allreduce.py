"""A tensor-parallel all-reduce as serving engines run it: the algorithm they pick for each message size.

Inference engines on NVIDIA GPUs that share one node's NVLink do not send their small all-reduces through a
collective library. vLLM (and SGLang, which runs vLLM's kernels) and TensorRT-LLM map every rank's buffer into its
peers' address space (CUDA IPC) and run their own kernels, which synchronise the ranks once or twice where NCCL's
ring takes ``2 (n - 1)`` steps. For ``n`` ranks, a buffer of ``S`` bytes, ``B`` bytes/s into each rank and ``alpha``
per synchronisation (one link latency):

- one-shot (vLLM ``cross_device_reduce_1stage``, TensorRT-LLM ``ONESHOT``): every rank reads the whole buffer of
  each of its ``n - 1`` peers and sums locally, ``alpha + (n - 1) S / B``;
- two-shot (``cross_device_reduce_2stage``, ``TWOSHOT``): a reduce-scatter (each rank reads its ``1/n`` slice
  from every peer) then an all-gather (it reads the summed slices back), ``2 alpha + 2 (n - 1) / n x S / B``:
  a ring's bytes in two steps;
- the collective library for larger buffers (NCCL, ``perf.comm.group_cost``: ring, or tree for its fewer
  latencies), and on switches that reduce in the network (``Fabric.in_network_reduction``: NVLink SHARP, "NVLS",
  on NVSwitch gen 3 and later, within one NVLink domain; NVIDIA/nccl issues 1031 and 1286) NCCL's NVLS
  algorithm: each rank sends its buffer into the switch once and receives the sum once, ``S / B``, after
  the library's ring or tree latency (no figure of NVLS's own latency is in hand; it is a library collective,
  not one of the engines' one-synchronisation kernels).

Which runs when: the engines' kernels serve 2, 4, 6 or 8 ranks of one node on NVLink, for buffers under 8 MiB
(vLLM csrc/custom_all_reduce.cuh and vllm/distributed/device_communicators/custom_all_reduce.py, 2025: one-shot
always for 2 ranks, under 512 KiB for up to 4 and 256 KiB for up to 8, two-shot above); TensorRT-LLM picks among
the same two kernels and NCCL from a table of the strategy it measured fastest per GPU generation, tp, hidden size
and token count (cpp/tensorrt_llm/common/customAllReduceUtils.h, ``selectStrategyLookUpTable``), and NCCL's tuner
picks the algorithm its model says is fastest. rainier takes the fastest of the algorithms available at the size,
as those tables do; vLLM's fixed switch points sit where its measurements found one-shot and two-shot cross,
within a few times of where these costs cross (85 KiB on eight H100s at the fitted links). A time that is the least
of the costs available at each size never falls as the buffer grows. Neuron, TPU and multi-node groups keep the
library's cost.

Every slope is a bandwidth term (scaled by the fitted ``comm`` fraction with the links' rate, ``scaled``); the
intercepts are link latencies, to which the cost model adds its fitted per-call latency.
"""

from __future__ import annotations

from dataclasses import dataclass

from rainier.hardware import Cluster, Vendor
from rainier.hardware.system import Topology
from rainier.perf.collectives import Level

KIB = 1024
MIB = 1024 * KIB
CUSTOM_WORLD_SIZES = frozenset({2, 4, 6, 8})  # vLLM CustomAllreduce._SUPPORTED_WORLD_SIZES
CUSTOM_MAX_BYTES = 8 * MIB  # vLLM CustomAllreduce max_size (8192 x 1024 bytes)

Line = tuple[float, float]  # seconds = slope x bytes + intercept


@dataclass(frozen=True, slots=True)
class EngineAllReduce:
    """The seconds one all-reduce of a given size takes on a placed tensor-parallel group, the engine's choice of
    algorithm included (module docstring), before the fitted per-call latency."""

    library: Line  # the collective library's ring or tree
    in_network: Line | None = None  # NVLS, on switches that reduce in the network
    one_shot: Line = (0.0, 0.0)
    two_shot: Line = (0.0, 0.0)
    custom_below: float = 0.0  # bytes: the engine's own kernels for smaller buffers (0: never)

    def _choices(self, nbytes: float) -> list[tuple[float, str]]:
        lines = [(self.library, "ring/tree")]
        if self.in_network is not None:
            lines.append((self.in_network, "NVLS"))
        if nbytes < self.custom_below:
            lines += [(self.one_shot, "one-shot"), (self.two_shot, "two-shot")]
        return [(slope * nbytes + intercept, name) for (slope, intercept), name in lines]

    def seconds(self, nbytes: float) -> float:
        """The fastest available algorithm's time (module docstring)."""
        library = self.library[0] * nbytes + self.library[1]
        if self.in_network is None and nbytes >= self.custom_below:  # the common case, without a list
            return library
        return min(t for t, _ in self._choices(nbytes))

    def algorithm(self, nbytes: float) -> str:
        """The name of the algorithm a buffer of ``nbytes`` runs: one-shot, two-shot, ring/tree or NVLS."""
        return min(self._choices(nbytes))[1]

    def scaled(self, factor: float) -> EngineAllReduce:
        """The same group with every bandwidth term ``factor`` times as long (its links at another fraction)."""

        def scale(line: Line) -> Line:
            return (line[0] * factor, line[1])

        return EngineAllReduce(
            library=scale(self.library),
            in_network=None if self.in_network is None else scale(self.in_network),
            one_shot=scale(self.one_shot),
            two_shot=scale(self.two_shot),
            custom_below=self.custom_below,
        )


def engine_all_reduce(cluster: Cluster, levels: list[Level], library: Line, ranks: int) -> EngineAllReduce:
    """The all-reduce of ``ranks`` tensor-parallel ranks placed on ``levels`` (innermost first, links already at
    the fitted fraction), whose collective library costs ``library``: the engine's kernels and NVLS where the
    group and the hardware allow them (module docstring)."""
    if ranks < 2 or len(levels) != 1:  # one rank, or a group that crosses a slower level: the library alone
        return EngineAllReduce(library=library)
    level = levels[0]
    system = cluster.system
    switched = system.topology is Topology.SWITCHED
    in_network = None
    if switched and system.scale_up.in_network_reduction:
        in_network = (1.0 / level.bw_bytes_per_s, library[1])
    nvidia_node = cluster.accelerator.vendor is Vendor.NVIDIA and ranks <= system.devices_per_server
    if not (nvidia_node and switched and ranks in CUSTOM_WORLD_SIZES):
        return EngineAllReduce(library=library, in_network=in_network)
    n = float(ranks)
    return EngineAllReduce(
        library=library,
        in_network=in_network,
        one_shot=((n - 1.0) / level.bw_bytes_per_s, level.alpha_s),
        two_shot=(2.0 * (n - 1.0) / n / level.bw_bytes_per_s, 2.0 * level.alpha_s),
        custom_below=CUSTOM_MAX_BYTES,
    )
