"""The locked 7B and 13B configs' evaluate sections carry the published protocol: every benchmark of the
reference README's table for that size with its published shots, ColossalEval's prompt of the release that scored
that table, first-token scoring, a path left to the user, and the report's published values are the README's."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpt.evaluate import protocol
from cpt.report.benchmarks import PUBLISHED
from cpt.workflow.experiment import load

REPO = Path(__file__).resolve().parents[2]
SHOTS = {"7b": {"mmlu": 5, "cmmlu": 5, "agieval": 5, "gaokao": 0, "ceval": 5},
         "13b": {"mmlu": 5, "cmmlu": 5, "gsm": 8, "agieval": 5, "gaokao": 0, "ceval": 5}}
STYLE = {"7b": "colossaleval-2023-09", "13b": "colossaleval"}


@pytest.mark.parametrize("size", ["7b", "13b"])
def test_locked_evaluate_sections_carry_the_published_protocol(size):
    section = load(REPO / "config" / f"colossal-llama-2-{size}.yaml")["evaluate"]
    assert section["published"] == f"colossal-llama-2-{size}"
    assert section["prompt_style"] == STYLE[size] == PUBLISHED[section["published"]]["prompt_style"]
    assert section["scoring"] == "first_token" and section["backend"] == "cpt"
    benches = section["benchmarks"]
    assert {n: b["shots"] for n, b in benches.items()} == SHOTS[size] == PUBLISHED[section["published"]]["shots"]
    assert {n: b["format"] for n, b in benches.items()} == {n: n for n in SHOTS[size]}
    assert all(b.get("path") is None for b in benches.values())  # yours: not run until given
    assert section["data_root"] is None
    assert "four_choice_only" not in benches["agieval"] and "four_choice_only" not in benches["gaokao"]  # default on


def test_published_values_are_the_readme_tables():
    t7, t13 = PUBLISHED["colossal-llama-2-7b"]["rows"], PUBLISHED["colossal-llama-2-13b"]["rows"]
    assert t7["Colossal-LLaMA-2-7b-base"] == {"mmlu": 53.06, "cmmlu": 49.89, "agieval": 51.48, "gaokao": 58.82,
                                              "ceval": 50.20}
    assert t7["Llama-2-7B"] == {"mmlu": 44.47, "cmmlu": 32.97, "agieval": 32.60, "gaokao": 25.46, "ceval": None}
    assert t13["Colossal-LLaMA-2-13b-base"] == {"mmlu": 56.42, "cmmlu": 61.8, "gsm": 58.83, "agieval": 54.69,
                                                "gaokao": 69.53, "ceval": 60.3}
    assert t13["Llama-2-13B"] == {"mmlu": 55.35, "cmmlu": 38.14, "gsm": 31.31, "agieval": 40.07, "gaokao": 27.86,
                                  "ceval": None}
    for table in PUBLISHED.values():
        assert all(set(r) == set(table["shots"]) for r in table["rows"].values())
    assert set(protocol.AGIEVAL_SCORED).isdisjoint(protocol.AGIEVAL_LEFT_OUT)


def test_13b_config_no_longer_says_nothing_was_published():
    text = (REPO / "config" / "colossal-llama-2-13b.yaml").read_text(encoding="utf-8")
    assert "published numbers for the 7B model only" not in text and "not in our reference notes" not in text
    assert "56.42" in text and "58.83" in text
