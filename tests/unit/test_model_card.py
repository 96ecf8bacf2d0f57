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
