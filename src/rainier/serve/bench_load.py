"""The load of an in-flight batching case that states it only in words.

The shared validation schema (`../shared/validation/README.md`) records an in-flight batching benchmark as
``batch: null`` with a free-text ``framework``; the ``load`` fields the simulator replays (``serve.inflight``:
``load``, ``request_rate``, ``concurrency``, ``num_requests``, ``slo``) are rainier's own additions. A case that
leaves ``load`` out is read here for the load its benchmark ran, from its id, group, framework, notes and
targets' notes, and the reading is reported with the case as an assumption:

- **MLPerf Inference** (``MLPerf`` or ``MLCommons`` in the id, group, framework or source; notes may only compare
  a run with one): the scenario named in the id, the framework, the group or the notes. Offline issues every
  query at once (``offline``); Server and Interactive are Poisson streams the submitter pushed to the highest rate
  that met the benchmark's p99 latency limits (``max_rate``), the limits of LoadGen's ``mlperf.conf`` for the
  benchmark the model is (``MLPERF_LIMITS``). A submission tunes its engines' batch for throughput (NVIDIA's
  configs set ``gpu_batch_size`` from 128 to 6,000 sequences per engine, v4.1 and v5.1), so where the case states
  no ``max_batch`` the KV cache alone bounds it, not an engine's default (on the 44 MLPerf cases here with their
  configs' engine settings removed: median 18.5% with TensorRT-LLM's defaults, 15.0% bounded by the cache, 12.2%
  with the configs' own).
- **A closed loop** (``--max-concurrency 8``, ``concurrency 50``, ``conc8``, ``8 concurrent requests``):
  ``concurrency``.
- **A Poisson stream** (``--request-rate 4``, ``qps 1``, ``4 req/s``): ``rate``; ``request-rate inf`` is the
  client sending everything at once, ``offline``.
- **Otherwise** the throughput mode of the benchmark tools (trtllm-bench, ``benchmark_throughput``, ``vllm bench
  throughput``, GenAI-Perf's and SGLang's offline runs): every request at once, ``offline``.

A request count the text states (``--num-prompts 1000``, ``200 prompts``) is kept as ``num_requests``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rainier.serve.datasets import length_samples, request_means
from rainier.serve.inflight import TOKEN_BUDGET_KEYS
from rainier.serve.limits import MAX_BATCH

# LoadGen's p99 latency limits per LLM benchmark, Server and Interactive scenarios, in ms (mlcommons LoadGen
# ``mlperf.conf``, as shipped with every MLPerf Inference v5.1 submission, e.g. mlcommons/inference_results_v5.1
# @ 965182b0 closed/AMD/measurements/8xMI300X_2xEPYC_9575F/llama2-70b-99.9/Server/mlperf.conf:
# ``<benchmark>.Server.ttft_latency`` / ``tpot_latency``; GPT-J's is its end-to-end ``target_latency``, 20 s).
MLPERF_LIMITS: dict[str, dict[str, float]] = {
    "llama2-70b": {"ttft_p99_ms": 2000.0, "tpot_p99_ms": 200.0},
    "llama2-70b-interactive": {"ttft_p99_ms": 450.0, "tpot_p99_ms": 40.0},
    "mixtral-8x7b": {"ttft_p99_ms": 2000.0, "tpot_p99_ms": 200.0},
    "llama3_1-405b": {"ttft_p99_ms": 6000.0, "tpot_p99_ms": 175.0},
    "llama3_1-405b-interactive": {"ttft_p99_ms": 4500.0, "tpot_p99_ms": 80.0},
    "llama3_1-8b": {"ttft_p99_ms": 2000.0, "tpot_p99_ms": 100.0},
    "llama3_1-8b-interactive": {"ttft_p99_ms": 500.0, "tpot_p99_ms": 30.0},
    "deepseek-r1": {"ttft_p99_ms": 2000.0, "tpot_p99_ms": 80.0},
    "gptj": {"e2e_latency_p99_ms": 20000.0},
}
# The request-length mix each benchmark issues, where rainier ships it (serve.datasets).
MLPERF_DATASETS = {
    "llama2-70b": "mlperf-llama2-70b",
    "mixtral-8x7b": "mlperf-mixtral-8x7b",
    "llama3_1-405b": "mlperf-llama3.1-405b",
    "llama3_1-8b": "mlperf-llama3.1-8b",
    "deepseek-r1": "mlperf-deepseek-r1",
}
# The benchmark a model is, by its name with everything but letters and digits removed.
_MLPERF_MODELS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"llama2\D*70b|llama270b"), "llama2-70b"),
    (re.compile(r"mixtral"), "mixtral-8x7b"),
    (re.compile(r"405b"), "llama3_1-405b"),
    (re.compile(r"llama3\D*8b|llama318b|llama38b"), "llama3_1-8b"),
    (re.compile(r"deepseekr1"), "deepseek-r1"),
    (re.compile(r"gptj"), "gptj"),
)
_SCENARIO = re.compile(r"(?<![a-z])(offline|server|interactive)(?![a-z])")
_CONCURRENCY = (
    re.compile(
        r"(?:max[-_ ]?concurrency|concurrency|num[-_ ]concurrent[-_ ]requests|concurrent[-_ ]requests|"
        r"concurrent[-_ ]users|concurrent[-_ ]clients)\s*(?:of|=|:|is)?\s*(\d+)"
    ),
    re.compile(r"(\d+)\s+concurrent\s+(?:requests|users|clients|streams)"),
    re.compile(r"(?<![a-z])conc[-_]?(\d+)(?!\d)"),
)
_ID_CONCURRENCY = re.compile(r"(?<![a-z0-9])c(\d+)(?![\d.a-z])")  # an id's "-c8-" (trtllm-bench, vLLM blog runs)
_RATE = (
    re.compile(r"(?:request[-_ ]rate|arrival[-_ ]rate|qps|rps)\s*(?:of|=|:|is)?\s*(inf\b|\d+(?:\.\d+)?)"),
    re.compile(r"(\d+(?:\.\d+)?)\s*(?:qps|rps|req/s|requests/s|requests per second)"),
    re.compile(r"(?<![a-z])rate[-_]?(\d+(?:\.\d+)?)(?![\d.])"),
)
_REQUESTS = (
    re.compile(r"(?:num[-_ ]prompts|num[-_ ]requests|max[-_ ]num[-_ ]completed[-_ ]requests)\s*(?:=|:)?\s*(\d+)"),
    re.compile(r"(\d[\d,]*)\s+(?:prompts|requests)(?![a-z_-])(?!\s+(?:per|each|at once|in flight)\b)"),
)


@dataclass(frozen=True, slots=True)
class BenchLoad:
    """A reading of a case's words: the ``serving`` fields it gives (its load, or what else the shared schema
    cannot state), the sentence that says so, and the field that sentence is an assumption about."""

    fields: dict[str, Any]
    text: str
    field: str = "serving.load"


def mlperf_benchmark(model_name: str, interactive: bool = False) -> str | None:
    """The MLPerf LLM benchmark a model name is (``MLPERF_LIMITS``' keys), or None."""
    compact = re.sub(r"[^a-z0-9]", "", model_name.lower())
    for pattern, name in _MLPERF_MODELS:
        if pattern.search(compact):
            key = f"{name}-interactive" if interactive else name
            return key if key in MLPERF_LIMITS else None
    return None


def mlperf_dataset(model_name: str) -> str | None:
    """The catalog dataset (``catalog/datasets.yaml``) of the MLPerf LLM benchmark a model name is, if shipped."""
    benchmark = mlperf_benchmark(model_name)
    return None if benchmark is None else MLPERF_DATASETS.get(benchmark)


def is_mlperf(case_id: str, group: str, framework: str, source: str = "") -> bool:
    """Whether a case's id, group, framework or source says it is an MLPerf Inference run (its notes may only
    compare it with one)."""
    return any("mlperf" in t.lower() or "mlcommons" in t.lower() for t in (case_id, group, framework, source))


def _first(patterns: Iterable[re.Pattern[str]], texts: Iterable[str]) -> str | None:
    for text in texts:
        for pattern in patterns:
            found = pattern.search(text)
            if found:
                return found.group(1)
    return None


def _scenario(texts: Iterable[str]) -> str | None:
    """The one MLPerf scenario the first text naming exactly one names."""
    for text in texts:
        named = {str(word) for word in _SCENARIO.findall(text)}
        if len(named) == 1:
            return named.pop()
    return None


def read_bench_load(serving: Mapping[str, Any], *, case_id: str, group: str, model_name: str,
                    notes: str = "", target_notes: Iterable[str] = (), source: str = "") -> BenchLoad:  # fmt: skip
    """The load a ``batch: null`` case without ``serving.load`` ran, read from its words (module docstring)."""
    framework = str(serving.get("framework") or "")
    targets = " ".join(str(n) for n in target_notes)
    # most specific first: the id and framework describe this run, the notes may compare it with others
    texts = [t.lower() for t in (case_id, framework, targets, group, notes)]
    fields: dict[str, Any] = {}
    # a flag anywhere; "200 prompts" only where it describes this run (notes may quote another benchmark's)
    count = _first(_REQUESTS[:1], texts) or _first(_REQUESTS[1:], texts[:3])
    if count is not None and int(count.replace(",", "")) > 0:
        fields["num_requests"] = int(count.replace(",", ""))
    if is_mlperf(case_id, group, framework, source):
        scenario = _scenario(texts)
        tuned = {} if serving.get("max_batch") is not None else {"max_batch": MAX_BATCH}
        batch_text = "; engine batch bounded by its KV cache alone" if tuned else ""
        if scenario in ("server", "interactive"):
            benchmark = mlperf_benchmark(model_name, interactive=scenario == "interactive")
            if benchmark is not None:
                limits = MLPERF_LIMITS[benchmark]
                bounds = ", ".join(f"{k} {v:g}" for k, v in limits.items())
                return BenchLoad(
                    {"load": "max_rate", "slo": dict(limits), **tuned},
                    f"serving.load: max_rate (MLPerf {scenario.title()}: the highest Poisson rate within LoadGen's "
                    f"{benchmark} limits, {bounds}{batch_text})",
                )
        name = "scenario not named"
        if scenario == "offline":
            name = "Offline"
        elif scenario is not None:  # a Server run of a benchmark whose limits are not known here
            name = f"{scenario.title()} run of a model without known LoadGen limits, costed as Offline"
        return BenchLoad(
            {"load": "offline", **tuned}, f"serving.load: offline (MLPerf, {name}: every query at once{batch_text})"
        )
    concurrency = _first(_CONCURRENCY, texts) or _first((_ID_CONCURRENCY,), texts[:1])
    if concurrency is not None and int(concurrency) > 0:
        fields.update(load="concurrency", concurrency=int(concurrency))
        return BenchLoad(fields, f"serving.load: concurrency {concurrency} (a closed loop, from the case's text)")
    rate = _first(_RATE, texts)
    if rate is not None and rate != "inf" and float(rate) > 0:
        fields.update(load="rate", request_rate=float(rate))
        return BenchLoad(fields, f"serving.load: rate {float(rate):g}/s (Poisson arrivals, from the case's text)")
    fields["load"] = "offline"
    return BenchLoad(fields, "serving.load: offline (throughput mode: every request at once; no rate or concurrency "
                             "stated)")  # fmt: skip


# Engine settings a case's words may carry where its fields do not (launch flags and prose).
_KV_WORDS = (
    re.compile(r"kv[-_ ]cache[-_ ]dtype\s*[=: ]\s*(fp8(?:_e4m3|_e5m2)?|bf16|fp16|auto)\b"),
    re.compile(r"kv[-_ ]cache\s+(?:in\s+)?(fp8|bf16|fp16)\b"),
    re.compile(r"(?<![a-z0-9])(fp8|bf16|fp16)[-_ ]?kv(?![a-z])"),
)
_LIMIT_WORDS = (
    (
        "max_batch",
        re.compile(r"(?:max[-_]batch[-_]size|max[-_]num[-_]seqs|max[-_]running[-_]requests)\s*[=: ]\s*(\d+)"),
    ),
    ("max_num_tokens", re.compile(r"max[-_]num[-_]tokens\s*[=: ]\s*(\d+)")),
    ("max_num_batched_tokens", re.compile(r"max[-_]num[-_]batched[-_]tokens\s*[=: ]\s*(\d+)")),
    ("chunked_prefill_size", re.compile(r"chunked[-_]prefill[-_]size\s*[=: ]\s*(\d+)")),
)
# SGLang's and TensorRT-LLM's MoE features by name, unless the words say they were off
_FLAG_WORDS = (
    ("two_batch_overlap", re.compile(r"two[- ]batch[- ]overlap|\btbo\b")),
    ("eplb", re.compile(r"\beplb\b|expert[- ]parallel(?:ism)? load balanc")),
)
_OFF = re.compile(r"^\W{0,3}(?:disabled|off|not used|no\b)|(?:\bno|without|disable[ds]?)\W{1,3}$")


def engine_settings_from_words(serving: Mapping[str, Any]) -> BenchLoad | None:
    """The KV-cache format, the engine limits (``max_batch``, the token budget) and the MoE features
    (``two_batch_overlap``, ``eplb``; off where the words say "disabled", "off" or "no") a case's framework
    states in words (``--kv-cache-dtype fp8``, ``KV cache FP16``; ``--max-num-seqs 256``, ``max_num_tokens 8192``,
    ``--chunked-prefill-size 4096``; ``two-batch overlap``, ``EPLB``) where its fields do not; None when it adds
    none. Neither notes nor ids are read: notes compare a run with others and an id may carry its group's name
    (stop 48: reading them gave the vLLM blog's bf16-KV runs, ``vllm-blog-fp8kv-...-kvbf16``, the fp8 cache they
    are compared with)."""
    framework = str(serving.get("framework") or "").lower()
    fields: dict[str, Any] = {}
    if serving.get("kv_cache_precision") is None and serving.get("kv_cache_dtype") is None:
        kv = _first(_KV_WORDS, (framework,))
        if kv is not None:
            fields["kv_cache_dtype"] = kv
    budget_known = any(serving.get(key) is not None for key in TOKEN_BUDGET_KEYS)  # one budget at most
    for key, pattern in _LIMIT_WORDS:
        budget = key in TOKEN_BUDGET_KEYS
        if serving.get(key) is not None or (budget and budget_known):
            continue
        found = _first((pattern,), (framework,))
        if found is not None and int(found) > 0:
            fields[key] = int(found)
            budget_known = budget_known or budget
    for key, pattern in _FLAG_WORDS:
        named = pattern.search(framework) if serving.get(key) is None else None
        if named is not None:
            before = framework[max(0, named.start() - 12) : named.start()]
            after = framework[named.end() : named.end() + 12]
            fields[key] = not (_OFF.search(after) or _OFF.search(before))
    if not fields:
        return None
    said = ", ".join(f"{key} {value}" for key, value in fields.items())
    return BenchLoad(fields, f"serving: {said} (from the case's framework)", field="serving")


def mlperf_lengths(
    serving: Mapping[str, Any], *, case_id: str, group: str, model_name: str, source: str = ""
) -> tuple[BenchLoad, ...]:
    """The mean request lengths of an MLPerf run's dataset where its case leaves them out (``mlperf_dataset``:
    the dataset's mean input, and its mean reference output where the dataset counts output tokens), one reading
    per length."""
    missing = [key for key in ("input_len", "output_len") if serving.get(key) is None]
    if not missing or not is_mlperf(case_id, group, str(serving.get("framework") or ""), source):
        return ()
    dataset = mlperf_dataset(model_name)
    if dataset is None:
        return ()
    samples = length_samples(dataset)
    means = dict(zip(("input_len", "output_len"), request_means(samples, None, None), strict=True))
    if "output_len" in missing and samples.mean_output is None:
        missing.remove("output_len")  # the dataset counts no output tokens: left for the case to state
    return tuple(
        BenchLoad({key: means[key]}, f"serving.{key}: {means[key]} (mean of MLPerf's {dataset} dataset)",
                  field=f"serving.{key}")
        for key in missing
    )  # fmt: skip


_ATTENTION_DP = re.compile(r"(?:enable[-_ ])?(?:attention[-_ ]dp|dp[-_ ]attention|data[- ]parallel attention)")


def attention_layout(serving: Mapping[str, Any], *, notes: str = "") -> BenchLoad | None:
    """Data-parallel attention where the shared schema, which has no field for it, leaves it to be inferred:
    experts over more ranks than the tensor-parallel group (``ep`` > ``tp``) are ``ep / tp`` attention groups
    (SGLang's and TensorRT-LLM's wide-EP layouts); ``ep`` = ``tp`` with words naming attention data parallelism
    (``enable_attention_dp``, ``--enable-dp-attention``) is TensorRT-LLM's ``attention_dp``."""
    if serving.get("dp_attention") is not None or serving.get("attention_dp") is not None:
        return None
    tp, ep = serving.get("tp"), serving.get("ep")
    if not (isinstance(tp, int) and isinstance(ep, int)) or isinstance(tp, bool) or isinstance(ep, bool):
        return None
    if 0 < tp < ep and ep % tp == 0:
        text = f"serving.dp_attention: {ep // tp} (ep {ep} over tp {tp}: the experts' ranks beyond the tensor group)"
        return BenchLoad({"dp_attention": ep // tp}, text, field="serving.dp_attention")
    if ep == tp > 1 and _ATTENTION_DP.search(f"{serving.get('framework') or ''} {notes}".lower()):
        text = "serving.attention_dp: true (the case's words name attention data parallelism, ep = tp)"
        return BenchLoad({"attention_dp": True}, text, field="serving.attention_dp")
    return None


_DISAGGREGATED = re.compile(r"disaggregat|\bpd\b|\bpd-|\d+p\d+d\b|prefill (?:instance|server|node)|"
                            r"decode (?:instance|server|node)")  # fmt: skip
_PHASE_WORD = re.compile(r"(?<![a-z])(prefill|decode)(?![a-z])")


def disaggregated_phase(serving: Mapping[str, Any], *, case_id: str) -> BenchLoad | None:
    """The ``phase`` of one side of a disaggregated prefill/decode deployment measured alone, which the shared
    schema has no field for: its id or framework names the disaggregation and exactly one side (the id first), a
    prefill side generating one token."""
    framework = str(serving.get("framework") or "").lower()
    if serving.get("phase") is not None or not _DISAGGREGATED.search(f"{case_id.lower()} {framework}"):
        return None
    for text in (case_id.lower(), framework):
        named = set(_PHASE_WORD.findall(text))
        if len(named) == 1:
            phase = str(named.pop())
            if phase == "prefill" and serving.get("output_len") != 1:
                return None
            said = f"serving.phase: {phase} (one side of a disaggregated deployment, as the case's words say)"
            return BenchLoad({"phase": phase}, said, field="serving.phase")
    return None
