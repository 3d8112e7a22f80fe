"""TensorRT-LLM's ADP balance in the simulator: prompts held back, counted by hand; settings and their errors."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from typer.testing import CliRunner

from rainier.cli import app
from rainier.errors import InputError
from rainier.serve.balance import AdpBalance
from rainier.serve.simulate import Request, Scheduler, ServeScenario, simulate_serving, simulate_timeline

from .test_simulate import LinearCost

runner = CliRunner()


@dataclass(frozen=True)
class RanksCost(LinearCost):
    """10 ms per iteration whatever it holds, on ``dp_attention`` attention ranks."""

    dp_attention: int = 2


def _ttfts(balance: AdpBalance | None, *rows: tuple[float, int, int]) -> list[float]:
    requests = tuple(Request(arrival_s=a, input_len=i, output_len=o) for a, i, o in rows)
    scenario = ServeScenario(cost=RanksCost(), requests=requests, adp_balance=balance)
    timeline = simulate_timeline(scenario)
    return [round(float(t) * 1e3, 6) for t in timeline.first_token_s - timeline.arrival_s]


def test_a_lone_prompt_waits_for_the_timeout() -> None:
    # Two prompts at t=0 go at once (no rank decodes yet) and decode from 10 ms. The counter of iterations without a
    # prompt on every rank starts at the 10 ms boundary (1), 20 ms (2; the 15 ms arrival waits), 30 ms (3 =
    # timeout: it goes), so its first token ends the 30-40 ms iteration: TTFT 25 ms instead of 15 ms.
    rows = ((0.0, 10, 100), (0.0, 10, 100), (0.015, 10, 5))
    assert _ttfts(None, *rows) == [10.0, 10.0, 15.0]
    assert _ttfts(AdpBalance(batching_wait_iters=1, timeout_iters=3), *rows) == [10.0, 10.0, 25.0]


def test_prompts_on_every_rank_wait_the_batching_iterations() -> None:
    # At 20 ms both ranks have a prompt and a decode: batching count 1 (hold), 30 ms: 2 (hold), 40 ms: go.
    rows = ((0.0, 10, 100), (0.0, 10, 100), (0.015, 10, 5), (0.015, 10, 5))
    assert _ttfts(AdpBalance(batching_wait_iters=2, timeout_iters=50), *rows) == [10.0, 10.0, 35.0, 35.0]
    assert _ttfts(AdpBalance(batching_wait_iters=0, timeout_iters=50), *rows) == [10.0, 10.0, 15.0, 15.0]


def test_an_engine_with_a_rank_idle_never_holds() -> None:
    # one decoding sequence on two ranks: some rank has nothing to decode, so prompts go at once
    rows = ((0.0, 10, 100), (0.015, 10, 5))
    assert _ttfts(AdpBalance(batching_wait_iters=10, timeout_iters=50), *rows) == [10.0, 15.0]


def test_settings_and_their_errors() -> None:
    assert AdpBalance.parse("3,9") == AdpBalance(batching_wait_iters=3, timeout_iters=9)
    assert AdpBalance.parse("default") == AdpBalance(batching_wait_iters=10, timeout_iters=50)
    assert AdpBalance.from_case(None) is None
    assert AdpBalance.from_case({"batching_wait_iters": 2, "timeout_iters": 6}) == AdpBalance(2, 6)
    with pytest.raises(InputError, match="adp-balance"):
        AdpBalance.parse("3")
    with pytest.raises(InputError, match=r"serving\.adp_balance"):
        AdpBalance.from_case({"timeout": 3})
    with pytest.raises(InputError, match="timeout_iters"):
        AdpBalance(batching_wait_iters=1, timeout_iters=-1)
    one_rank = RanksCost(dp_attention=1)
    with pytest.raises(InputError, match="adp_balance"):
        ServeScenario(cost=one_rank, requests=(Request(arrival_s=0.0, input_len=8, output_len=2),),
                      adp_balance=AdpBalance())  # fmt: skip
    with pytest.raises(InputError, match="adp_balance"):
        ServeScenario(cost=RanksCost(), requests=(Request(arrival_s=0.0, input_len=8, output_len=2),),
                      adp_balance=AdpBalance(), scheduler=Scheduler.STATIC)  # fmt: skip


def test_cli_adp_balance() -> None:
    args = ["serve", "simulate", "--model", "deepseek-v3", "--accelerator", "b200", "--count", "8",
            "--dp-attention", "8", "--ep", "8", "--precision", "fp4", "--rate", "5", "--duration", "60",
            "--input-len", "800", "--output-len", "400", "--max-batch", "4096", "--json"]  # fmt: skip
    ttft = {}
    for extra in ([], ["--adp-balance", "3,9"]):
        result = runner.invoke(app, [*args, *extra])
        assert result.exit_code == 0, result.output
        ttft[bool(extra)] = json.loads(result.stdout)["ttft_ms"]["p50"]
    assert ttft[True] > ttft[False]  # the held prompts wait for the next timeout
    result = runner.invoke(app, [*args, "--adp-balance", "3,9", "--speculative", "mtp:k=1,len=1.8"])
    assert result.exit_code == 2 and "speculative" in result.output
    result = runner.invoke(app, [*args, "--adp-balance", "three"])
    assert result.exit_code == 2
    assert "adp-balance" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_the_result_records_the_balance() -> None:
    rows = ((0.0, 10, 100), (0.0, 10, 100), (0.015, 10, 5))
    requests = tuple(Request(arrival_s=a, input_len=i, output_len=o) for a, i, o in rows)
    balanced = ServeScenario(cost=RanksCost(), requests=requests, adp_balance=AdpBalance(1, 3))
    assert simulate_serving(balanced).to_dict()["adp_balance"] == {"batching_wait_iters": 1, "timeout_iters": 3}
    assert simulate_serving(ServeScenario(cost=RanksCost(), requests=requests)).to_dict()["adp_balance"] is None
