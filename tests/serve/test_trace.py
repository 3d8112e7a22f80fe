"""Trace reading: CSV and JSON Lines, bad rows reported by line number and skipped, unusable files refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from rainier.errors import InputError
from rainier.serve.simulate import Request, ServeScenario, simulate_serving
from rainier.serve.trace import MAX_WARNINGS, load_trace

from .test_simulate import LinearCost


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_keeps_good_rows_and_reports_bad_ones(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "trace.csv",
        "arrival_s,input_len,output_len\n"
        "0.0,100,20\n"
        "0.5,abc,20\n"  # line 3
        "\n"
        "1.0,50,0\n"  # line 5
        "-2,50,5\n"  # line 6
        "1.5,64.0,8\n"
        "2.0,10\n"  # line 8
        "2.5,10,10,extra\n",  # line 9
    )
    requests, warnings = load_trace(path)
    assert requests == [
        Request(arrival_s=0.0, input_len=100, output_len=20),
        Request(arrival_s=1.5, input_len=64, output_len=8),
    ]
    assert [w.split(":")[0] for w in warnings] == ["line 3", "line 5", "line 6", "line 8", "line 9"]
    assert "input_len='abc'" in warnings[0]
    assert "output_len=0 must be >= 1" in warnings[1]
    assert "missing output_len" in warnings[3]


def test_csv_columns_in_any_order_extra_columns_ignored(tmp_path: Path) -> None:
    path = write(tmp_path, "t.CSV", "output_len, input_len ,arrival_s,user\n5,7,0.25,alice\n")
    requests, warnings = load_trace(path)
    assert requests == [Request(arrival_s=0.25, input_len=7, output_len=5)] and warnings == []


def test_jsonl(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "trace.jsonl",
        '{"arrival_s": 0, "input_len": 10, "output_len": 2}\n'
        "not json\n"
        "[1, 2, 3]\n"
        '{"arrival_s": 1, "input_len": 10.5, "output_len": 2}\n'
        '{"arrival_s": 1, "input_len": true, "output_len": 2}\n'
        "\n"
        '{"arrival_s": 2.5, "input_len": 3, "output_len": 4, "tenant": "x"}\n',
    )
    requests, warnings = load_trace(path)
    assert [r.arrival_s for r in requests] == [0.0, 2.5]
    assert [w.split(":")[0] for w in warnings] == ["line 2", "line 3", "line 4", "line 5"]
    assert "not JSON" in warnings[0] and "JSON object" in warnings[1]


@pytest.mark.parametrize(
    ("name", "text", "match"),
    [
        ("empty.csv", "", "header must name"),
        ("bad.csv", "arrival_s,input_len\n0,1\n", "missing output_len"),
        ("allbad.csv", "arrival_s,input_len,output_len\nx,1,1\n", "no usable request.*line 2"),
        ("empty.jsonl", "\n\n", "no usable request"),
        ("trace.txt", "0,1,1\n", "unknown format"),
    ],
)
def test_unusable_traces_name_the_file(tmp_path: Path, name: str, text: str, match: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(InputError, match=f"trace .*{name}.*{match}"):
        load_trace(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_trace(tmp_path / "nope.jsonl")


def test_many_bad_rows_are_summarised(tmp_path: Path) -> None:
    rows = "".join("x,1,1\n" for _ in range(MAX_WARNINGS + 5))
    path = write(tmp_path, "t.csv", "arrival_s,input_len,output_len\n" + rows + "9,1,1\n")
    requests, warnings = load_trace(path)
    assert len(requests) == 1
    assert len(warnings) == MAX_WARNINGS + 1 and "105 skipped" in warnings[-1]


def test_unsorted_trace_is_served_in_arrival_order(tmp_path: Path) -> None:
    path = write(tmp_path, "t.csv", "arrival_s,input_len,output_len\n1.0,10,2\n0.0,10,2\nz,1,1\n")
    requests, warnings = load_trace(path)
    result = simulate_serving(ServeScenario(cost=LinearCost(), requests=tuple(requests), warnings=tuple(warnings)))
    assert result.requests_completed == 2 and result.warnings[0].startswith("line 4:")
    assert result.queue_ms is not None and result.queue_ms.p99 == 0.0
