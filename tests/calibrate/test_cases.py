"""Reading validation case files: the shipped sets, plan conversion, assumptions, malformed files, skips."""

from __future__ import annotations

from pathlib import Path

import pytest

from rainier.calibrate import CaseFile, CaseKind, InferenceCase, Metric, SkippedCase, TrainingCase, Trust, load_cases
from rainier.errors import InputError
from rainier.parallel import DegreeUnit, Schedule
from rainier.precision import Precision
from rainier.workload import Recompute
from tests.calibrate.conftest import raw_case, write_cases


def _case(cases: CaseFile, case_id: str) -> TrainingCase:
    case = next(c for c in cases.cases if c.id == case_id)
    assert isinstance(case, TrainingCase), case
    return case


def test_shipped_files_load_with_every_case(training: CaseFile, inference: CaseFile) -> None:
    assert training.kind is CaseKind.TRAINING and len(training.cases) >= 120
    assert inference.kind is CaseKind.INFERENCE and len(inference.cases) == 65
    assert all(isinstance(c, TrainingCase | SkippedCase) for c in training.cases)
    assert all(isinstance(c, InferenceCase) for c in inference.cases)
    assert all(c.reason for c in training.skipped)
    # Issue 11: no more than 5% of the public cases skipped.
    assert len(training.skipped) <= 0.05 * len(training.cases)
    assert len(training.groups) >= 14 and training.groups[0] == "Narayanan2021_Table1"


def test_neuron_case_keeps_neuroncore_degrees(training: CaseFile) -> None:
    case = _case(training, "neuron-trn1-gpt3-175b")
    plan = case.plan
    assert plan.degrees_unit is DegreeUnit.CORE
    assert (plan.tp_degree, plan.pp_degree, plan.dp_degree) == (32, 8, 4)
    # README convention 2: degrees multiply to count x cores per chip (512 trn1 chips x 2 NeuronCores).
    assert plan.num_ranks == case.count * case.device.num_logical_cores == 1024
    assert case.family == "trainium" and case.metric is Metric.TOKENS_PER_S_PER_DEVICE


def test_context_parallel_interleaved_case(training: CaseFile) -> None:
    plan = _case(training, "nemo2407-h100-llama3-70b").plan
    assert (plan.tp_degree, plan.pp_degree, plan.dp_degree, plan.cp_degree) == (4, 4, 2, 2)
    assert plan.vpp_degree == 5 and plan.schedule is Schedule.INTERLEAVED
    assert plan.precision is Precision.FP8 and plan.zero_stage == 1 and plan.sequence_parallel
    assert plan.num_microbatches == 128 // (2 * 1)


def test_nulls_become_stated_assumptions(training: CaseFile) -> None:
    case = _case(training, "nar21-39.1b")  # micro_batch, vpp, sp, zero_stage all null in Narayanan Table 1
    plan = case.plan
    assert (plan.mbs, plan.vpp_degree, plan.sequence_parallel, plan.zero_stage) == (1, 1, False, 0)
    assert plan.schedule is Schedule.ONE_F_ONE_B and plan.recompute is Recompute.FULL
    assert {a.field for a in case.assumptions} == {"micro_batch", "vpp", "sequence_parallel", "zero_stage", "attention"}
    assert not plan.flash_attention  # a 2021 source: Megatron-LM's unfused attention
    # pp = 1 and tp = 1: vpp and sequence parallelism cannot be anything else, so nothing is assumed about them.
    assert {a.field for a in _case(training, "nar21-1.7b").assumptions} == {"micro_batch", "zero_stage", "attention"}
    mcore = _case(training, "mcore-h100-1.7b")
    assert mcore.plan.recompute is Recompute.NONE and "recompute" in {a.field for a in mcore.assumptions}
    assert _case(training, "kor22-22b-full").assumptions[0].field == "zero_stage"
    assert _case(training, "mcore-h100-1.7b").plan.flash_attention  # a 2024 source: fused attention


def test_lora_cases_use_the_plans_lora_option(training: CaseFile) -> None:
    lora = [c for c in training.training if "lora" in c.group.lower() or "lora" in c.id.lower()]
    assert len([c for c in lora if c.group == "MLPerf_Training_v4.0_Llama2_70B_LoRA"]) == 4
    assert all(c.plan.lora and "lora" in {a.field for a in c.assumptions} for c in lora)
    assert not any(c.plan.lora for c in training.training if c not in lora)


def test_trust_metric_and_basis_are_typed(training: CaseFile) -> None:
    case = _case(training, "mcore-h100-strong-177b-96")
    assert case.trust is Trust.C and case.metric is Metric.MFU and case.value == 0.47


def test_fsdp_true_means_zero_3(tmp_path: Path) -> None:
    raw = raw_case("nar21-1.7b")
    raw["parallel"]["fsdp"] = True
    case = load_cases(write_cases(tmp_path, [raw])).cases[0]
    assert isinstance(case, TrainingCase) and case.plan.zero_stage == 3
    raw["parallel"]["zero_stage"] = 1
    assert "case nar21-1.7b.parallel: zero_stage=1 is invalid" in _skip_reason(tmp_path, raw)


# ----------------------------------------------------------------------------------------------------- malformed


def test_missing_field_names_file_case_and_field(tmp_path: Path) -> None:
    raw = raw_case("kor22-22b-full")
    del raw["parallel"]["tp"]
    assert "cases.yaml: case kor22-22b-full.parallel: missing required field 'tp'" in _skip_reason(tmp_path, raw)


def test_missing_target_value(tmp_path: Path) -> None:
    raw = raw_case("kor22-22b-full")
    raw["target"]["value"] = None
    assert "case kor22-22b-full.target: missing required field 'value'" in _skip_reason(tmp_path, raw)


def test_missing_model_size_names_the_case(tmp_path: Path) -> None:
    raw = raw_case("kor22-22b-full")
    raw["model"]["name"] = "not in the catalog"
    raw["model"]["layers"] = None
    reason = _skip_reason(tmp_path, raw)
    assert "case kor22-22b-full" in reason and "missing layers" in reason


@pytest.mark.parametrize(
    ("block", "key", "value", "message"),
    [
        ("parallel", "precision", "fp6", r"precision='fp6' is invalid"),
        ("parallel", "degrees_unit", "chip", r"degrees_unit='chip' is invalid"),
        ("target", "metric", "speedup", r"metric='speedup' is invalid"),
        ("target", "basis", "guessed", r"basis='guessed' is invalid"),
        ("parallel", "micro_bach", 2, r"unknown field\(s\): micro_bach"),
        (None, "trust", "D", r"trust='D' is invalid"),
    ],
)
def test_bad_values_skip_the_case_with_a_one_line_reason(
    tmp_path: Path, block: str | None, key: str, value: object, message: str
) -> None:
    """A bad case never aborts the file (issue 11): it is skipped, its reason the one-line error."""
    raw = raw_case("kor22-22b-full")
    (raw[block] if block else raw)[key] = value
    good = raw_case("nar21-1.7b")
    cases = load_cases(write_cases(tmp_path, [raw, good])).cases
    assert isinstance(cases[0], SkippedCase) and isinstance(cases[1], TrainingCase)
    import re

    assert re.search(message, cases[0].reason) and "\n" not in cases[0].reason and "kor22-22b-full" in cases[0].reason


@pytest.mark.parametrize(
    ("top", "message"),
    [
        ({"schema_version": 2}, r"schema_version=2 is invalid"),
        ({"kind": "serving"}, r"kind='serving' is invalid: allowed: training, inference"),
        ({"extra": 1}, r"expected top-level keys schema_version, kind, cases"),
    ],
)
def test_bad_top_level(tmp_path: Path, top: dict[str, object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_cases(write_cases(tmp_path, [raw_case("nar21-1.7b")], **top))


def test_syntax_error_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("schema_version: 1\nkind: [training\n")
    with pytest.raises(InputError, match=r"bad\.yaml: line \d+: malformed YAML"):
        load_cases(bad)
    with pytest.raises(InputError, match=r"nowhere\.yaml: cannot read file"):
        load_cases(tmp_path / "nowhere.yaml")


def test_duplicate_ids_and_empty_cases(tmp_path: Path) -> None:
    raw = raw_case("nar21-1.7b")
    first, second = load_cases(write_cases(tmp_path, [raw, raw])).cases
    assert isinstance(first, TrainingCase) and isinstance(second, SkippedCase)
    assert "duplicate id 'nar21-1.7b'" in second.reason
    with pytest.raises(InputError, match=r"'cases' must be a non-empty list"):
        load_cases(write_cases(tmp_path, []))


def test_inference_case_without_targets(tmp_path: Path) -> None:
    from tests.calibrate.conftest import INFERENCE

    raw = raw_case("trtllm0.6-h100-llama2-7b-b768-tp1-128-128", INFERENCE)
    raw["targets"] = []
    (case,) = load_cases(write_cases(tmp_path, [raw], kind="inference")).cases
    assert isinstance(case, SkippedCase) and "targets must be a non-empty list" in case.reason
    del raw["serving"]
    (case,) = load_cases(write_cases(tmp_path, [raw], kind="inference")).cases
    assert isinstance(case, SkippedCase) and "missing required field 'serving'" in case.reason


def test_training_file_declared_as_inference_skips_every_case(tmp_path: Path) -> None:
    (case,) = load_cases(write_cases(tmp_path, [raw_case("nar21-1.7b")], kind="inference")).cases
    assert isinstance(case, SkippedCase) and "case nar21-1.7b: missing required field 'serving'" in case.reason


# ----------------------------------------------------------------------------------------------------- skipped


def _skip_reason(tmp_path: Path, raw: dict[str, object]) -> str:
    case = load_cases(write_cases(tmp_path, [raw])).cases[0]
    assert isinstance(case, SkippedCase), case
    return case.reason


def test_unknown_accelerator_is_skipped_with_reason(tmp_path: Path) -> None:
    raw = raw_case("nar21-1.7b")
    raw["system"]["accelerator"] = "mi300x"
    assert "unknown accelerator 'mi300x'" in _skip_reason(tmp_path, raw)


def test_indivisible_plan_is_skipped_with_reason(tmp_path: Path) -> None:
    raw = raw_case("kor22-22b-full")
    raw["parallel"]["dp"] = 2  # tp*pp*dp*cp = 16 on 8 GPUs
    assert "must equal the device count 8" in _skip_reason(tmp_path, raw)
    raw = raw_case("kor22-175b-full")
    raw["parallel"]["vpp"] = 13  # 96 layers cannot fill pp*vpp = 104 virtual stages
    assert "96 layers cannot fill pp*chunks=104 virtual stages" in _skip_reason(tmp_path, raw)
    raw = raw_case("kor22-175b-full")
    raw["parallel"]["vpp"] = 5  # 96 layers over 40 stages: uneven chunks are fine now (issue 11)
    assert isinstance(load_cases(write_cases(tmp_path, [raw])).cases[0], TrainingCase)


def test_inexpressible_plan_is_skipped_with_reason(tmp_path: Path) -> None:
    raw = raw_case("nar21-1.7b")
    raw["parallel"]["vpp"] = 2  # interleaving without a pipeline
    assert "plan cannot be expressed: vpp=2 is invalid" in _skip_reason(tmp_path, raw)
    raw = raw_case("nar21-1.7b")
    raw["parallel"]["precision"] = "fp8"  # A100 has no FP8 tensor cores
    assert "a100-80gb has no fp8 peak" in _skip_reason(tmp_path, raw)


def test_null_precision_and_count_are_assumed_or_skipped(tmp_path: Path) -> None:
    raw = raw_case("nemo2407-h100-llama3-70b")
    raw["parallel"]["precision"] = None  # the notes say FP8
    case = load_cases(write_cases(tmp_path, [raw])).cases[0]
    assert isinstance(case, TrainingCase) and case.plan.precision is Precision.FP8
    assert "precision" in {a.field for a in case.assumptions}
    raw = raw_case("nar21-1.7b")
    raw["system"]["count"] = None
    assert "count null" in _skip_reason(tmp_path, raw)


def test_int8_training_is_a_plan(tmp_path: Path) -> None:
    raw = raw_case("nar21-1.7b")
    raw["parallel"]["precision"] = "int8"  # A100 int8 tensor cores (TPU v5p AQT-style training)
    case = load_cases(write_cases(tmp_path, [raw])).cases[0]
    assert isinstance(case, TrainingCase) and case.plan.precision is Precision.INT8
