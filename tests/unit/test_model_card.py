"""Every final/ carries a model card the Hub's own parser reads, with the stage's numbers and the base model's
license files."""

from __future__ import annotations

import json

from huggingface_hub import ModelCard

from cpt.report.model_card import write_model_card


def test_model_card_parses_with_hub_metadata_numbers_and_notices(tmp_path):
    src, final = tmp_path / "base", tmp_path / "run" / "final"
    src.mkdir()
    final.mkdir(parents=True)
    (src / "LICENSE.txt").write_text("LLAMA 2 COMMUNITY LICENSE AGREEMENT")
    (src / "USE_POLICY.md").write_text("Llama 2 Acceptable Use Policy")
    (final / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "tokens": 64, "loss": 5.0 - s}) + "\n"
                                                 for s in (1, 2, 3)))
    (final / "run.json").write_text(json.dumps({"world_size": 2}))
    write_model_card(final, "replay", "meta-llama/Llama-2-7b-hf", license="llama2", source_model=src)
    card = ModelCard.load(final / "README.md")
    d = card.data.to_dict()
    assert d["base_model"] == "meta-llama/Llama-2-7b-hf" and d["language"] == ["zh", "en"]
    assert d["license"] == "llama2" and d["library_name"] == "transformers" and "colossal-llama-2" in d["tags"]
    assert "| steps | 3 |" in card.text and "| tokens | 192 |" in card.text and "| final_loss | 2.0 |" in card.text
    assert "| world_size | 2 |" in card.text
    assert (final / "LICENSE.txt").read_text().startswith("LLAMA 2") and (final / "USE_POLICY.md").is_file()


def test_base_model_is_carried_from_stage_to_stage(tmp_path):
    from cpt.report.model_card import base_model_name

    first = tmp_path / "a" / "final"
    first.mkdir(parents=True)
    (first / "config.json").write_text(json.dumps({"_name_or_path": "/local/path/to/llama"}))
    assert base_model_name(first) == "final"  # a local path is no Hub id: the directory name
    (first / "config.json").write_text(json.dumps({"_name_or_path": "meta-llama/Llama-2-7b-hf"}))
    assert base_model_name(first) == "meta-llama/Llama-2-7b-hf"
    write_model_card(first, "base", "meta-llama/Llama-2-13b-hf")
    assert base_model_name(first) == "meta-llama/Llama-2-13b-hf"  # the previous stage's card wins


REPORT = {
    "bpb": {"replay": {"zh": {"bits_per_byte": 1.2345, "bytes": 6000, "tokens": 3000},
                       "en": {"bits_per_byte": 1.0, "bytes": 5997, "tokens": 1900}}},
    "benchmarks": {"replay": {"cmmlu": {"accuracy": 31.25, "num_questions": 80, "shots": 5, "scoring": "first_token",
                                        "prompt_style": "colossaleval", "format": "cmmlu", "split": "test",
                                        "few_shot_source": "dev", "backend": "cpt"}}},
    "cost": {"stages": [{"stage": "replay", "tokens": 2011, "devices": 2, "device_hours": 0.0027, "wall_hours": 0.0013,
                         "cost_usd": 0.0054, "rate_source": "measured"}]},
}


def test_card_before_evaluation_says_where_the_numbers_are_and_refresh_writes_them(tmp_path):
    from cpt.report.model_card import refresh_model_card

    final = tmp_path / "train" / "replay" / "final"
    final.mkdir(parents=True)
    write_model_card(final, "replay", "meta-llama/Llama-2-7b-hf", license="llama2")
    before = ModelCard.load(final / "README.md").text
    assert "Not evaluated when this card was written" in before and "evaluate/replay/bpb.json" in before
    (tmp_path / "report.json").write_text(json.dumps(REPORT))
    refresh_model_card(final, tmp_path / "report.json")
    card = ModelCard.load(final / "README.md")
    d = card.data.to_dict()
    assert d["base_model"] == "meta-llama/Llama-2-7b-hf" and d["license"] == "llama2"  # kept
    assert "| zh | 1.234 | 6000 | 3000 |" in card.text
    assert "| cmmlu | 31.25 | 80 | 5 | first_token | colossaleval | cmmlu | test | dev | cpt |" in card.text
    assert "| 2011 | 2 | 0.0027 | 0.0013 | 0.0054 | measured |" in card.text
    assert "Not evaluated" not in card.text
