"""The engines' tensor-parallel all-reduce: one-shot, two-shot and the library by message size (serve.allreduce)."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rainier.hardware import cluster_of
from rainier.serve.allreduce import CUSTOM_MAX_BYTES, KIB, MIB, EngineAllReduce
from rainier.serve.cost import replica_cost
from rainier.serve.efficiency import ServeEfficiency
from rainier.workload import get_model

EFF = ServeEfficiency(comm=1.0, collective_latency_s=0.0)
NVLINK4 = 450e9  # bytes/s per direction into an H100 (900 GB/s both ways)
NVLINK_ALPHA = 1.9e-6  # the fabric's per-step latency (catalog nvlink4)


def _all_reduce(accelerator: str, devices: int, tp: int) -> EngineAllReduce:
    return replica_cost(get_model("llama-3.1-70b"), cluster_of(accelerator, devices), tp=tp, eff=EFF).all_reduce


def test_eight_h100s_run_one_shot_then_two_shot_then_the_library() -> None:
    ar = _all_reduce("h100-sxm", 8, 8)
    small = 64 * KIB  # one-shot: one synchronisation, every peer's whole buffer read
    assert ar.seconds(small) == pytest.approx(NVLINK_ALPHA + 7 * small / NVLINK4)
    middle = 1 * MIB  # two-shot: a reduce-scatter and an all-gather, two synchronisations
    assert ar.seconds(middle) == pytest.approx(2 * NVLINK_ALPHA + 2 * 7 / 8 * middle / NVLINK4)
    assert (ar.algorithm(small), ar.algorithm(middle)) == ("one-shot", "two-shot")
    assert ar.custom_below == CUSTOM_MAX_BYTES  # the engines' kernels serve buffers under 8 MiB
    large = 64 * MIB  # NCCL: ring or tree, or NVLS on NVSwitch gen 3, whichever is faster
    ring = ar.library[0] * large + ar.library[1]
    assert ar.in_network is not None
    assert ar.seconds(large) == pytest.approx(min(ring, large / NVLINK4 + ar.library[1]))
    assert ar.seconds(large) < ring and ar.algorithm(large) == "NVLS"  # each rank's buffer in and out once


def test_two_ranks_run_one_shot_up_to_the_kernels_limit() -> None:
    # two ranks read the same bytes either way (one peer's whole buffer), so one synchronisation always wins,
    # as vLLM's kernel does for every size it takes
    ar = _all_reduce("h100-sxm", 8, 2)
    assert ar.algorithm(CUSTOM_MAX_BYTES - 16) == "one-shot" and ar.algorithm(CUSTOM_MAX_BYTES) != "one-shot"


@given(st.floats(min_value=0.0, max_value=1e9), st.floats(min_value=0.0, max_value=1e9))
def test_a_larger_buffer_never_takes_less_time(a: float, b: float) -> None:
    for ar in (_all_reduce("h100-sxm", 8, 8), _all_reduce("h100-sxm", 8, 4), _all_reduce("a100-80gb", 8, 8)):
        assert ar.seconds(min(a, b)) <= ar.seconds(max(a, b)) + 1e-15


def test_a100_has_no_in_network_reduction_and_neuron_only_its_library() -> None:
    a100 = _all_reduce("a100-80gb", 8, 8)
    assert a100.in_network is None and a100.custom_below == CUSTOM_MAX_BYTES
    trn2 = replica_cost(get_model("llama-3.1-70b"), cluster_of("trn2", 16), tp=64, unit_core=True, eff=EFF).all_reduce
    assert trn2 == EngineAllReduce(library=trn2.library)
    assert trn2.seconds(1 * MIB) == pytest.approx(trn2.library[0] * MIB + trn2.library[1])


def test_a_group_across_gb200_trays_uses_nccl_with_nvls_only() -> None:
    # GB200 NVL72: four GPUs per tray (node); vLLM's kernels need one node, NVLS spans the NVLink domain
    ar = _all_reduce("gb200", 72, 8)
    assert ar.custom_below == 0.0 and ar.in_network is not None
    assert _all_reduce("gb200", 72, 4).custom_below == CUSTOM_MAX_BYTES


def test_decode_all_reduces_are_cheaper_with_the_engines_kernels() -> None:
    # a decode step's message (64 sequences x 8,192 hidden x 2 bytes = 1 MiB) on 8 H100s: two-shot's two
    # synchronisations against NCCL's tree of 2 log2(8) steps
    ar = _all_reduce("h100-sxm", 8, 8)
    message = 64 * 8192 * 2
    assert ar.seconds(message) < ar.library[0] * message + ar.library[1]


@given(st.floats(min_value=0.0, max_value=1e9), st.floats(min_value=0.1, max_value=10.0))
def test_scaling_the_links_scales_only_the_bandwidth_terms(nbytes: float, factor: float) -> None:
    ar = _all_reduce("h100-sxm", 8, 8)
    scaled = ar.scaled(factor)
    assert scaled.custom_below == ar.custom_below
    for line, moved in ((ar.one_shot, scaled.one_shot), (ar.two_shot, scaled.two_shot), (ar.library, scaled.library)):
        assert moved == (pytest.approx(line[0] * factor), line[1])
    # a time at least the latency of the algorithm in use, and never negative
    assert scaled.seconds(nbytes) >= min(ar.one_shot[1], ar.two_shot[1], ar.library[1]) - 1e-15
    assert math.isfinite(scaled.seconds(nbytes))


def test_serve_estimate_names_the_algorithm_of_each_phase() -> None:
    from rainier.serve.estimate import ServeConfig, estimate_serving

    config = ServeConfig(tp=8, batch=16, input_len=2048, output_len=256)
    est = estimate_serving(get_model("llama-3.1-70b"), cluster_of("h100-sxm", 8), config).to_dict()
    prefill, decode = est["tp_all_reduce"]["prefill"], est["tp_all_reduce"]["decode"]
    assert prefill["bytes"] == 16 * 2048 * 8192 * 2 and prefill["algorithm"] == "NVLS"  # 512 MiB per call
    assert decode["bytes"] == 16 * 8192 * 2 and decode["algorithm"] in ("one-shot", "two-shot")
    single = estimate_serving(get_model("llama-3-8b"), cluster_of("h100-sxm", 1), ServeConfig(tp=1, batch=1))
    assert single.to_dict()["tp_all_reduce"] is None
