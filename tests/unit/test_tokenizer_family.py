"""The tokenizer-family seam: detection, and the SentencePiece family through the protocol == the spm modules."""

from __future__ import annotations

import json

import pytest
from tokenizer_fixtures import base_tokenizer_dir, botchan

from cpt.core.errors import TokenizerError
from cpt.core.schema import default
from cpt.tokenizer import spm
from cpt.tokenizer.family import family_of, model_file
from cpt.tokenizer.registry import open_tokenizer
from cpt.tokenizer.spm_extend import extend
from cpt.tokenizer.spm_family import SentencePieceTokenizer


@pytest.fixture(scope="module")
def tok():
    return open_tokenizer(base_tokenizer_dir())


def test_family_detected_and_facts(tok):
    assert family_of(base_tokenizer_dir()) == "sentencepiece" and isinstance(tok, SentencePieceTokenizer)
    proto = spm.load_proto(base_tokenizer_dir() / "tokenizer.model")
    assert len(tok) == 32000 and tok.pieces() == [p.piece for p in proto.pieces]
    assert (tok.bos_id, tok.eos_id, tok.unk_id, tok.pad_id) == (1, 2, 0, None)
    texts = tok.piece_texts()
    assert texts[0] is None and texts[3] is None          # <unk>, <0x00>
    assert texts[tok.pieces().index("▁the")] == " the"
    assert model_file(base_tokenizer_dir()).name == "tokenizer.model"


def test_encode_and_subword_ids_are_sentencepiece(tok):
    sp = spm.processor(spm.load_proto(base_tokenizer_dir() / "tokenizer.model"))
    lines = list(botchan()[:50]) + ["中华人民共和国"]
    assert tok.encode(lines) == sp.encode(lines, out_type=int)
    with_prefix, bare = tok.subword_ids(["中国"], dummy_prefix=True), tok.subword_ids(["中国"], dummy_prefix=False)
    assert with_prefix[0][0] == sp.piece_to_id("▁") and with_prefix[0][1:] == bare[0]


def test_extend_is_expand_extend_and_save_writes_chat_template(tok, tmp_path):
    ext, report = tok.extend(["中国", "人民"], vocab_size=None)
    options = {k: default(f"tokenizer.expansion.{k}") for k in ("score", "unreachable", "max_repair_pieces",
                                                                  "max_rounds")}
    proto, ref = extend(spm.load_proto(base_tokenizer_dir() / "tokenizer.model"), ["中国", "人民"],
                        vocab_size=None, **options)
    assert ext.proto.SerializeToString() == proto.SerializeToString() and report["added"] == ref["added"]
    assert ext.unreachable(32000) == []
    assert tok.english_check(ext, botchan()[:200])["identical"]
    out = ext.save(tmp_path / "ext", chat_template="{{ bos_token }}")
    cfg = json.loads((out / "tokenizer_config.json").read_text())
    assert cfg["chat_template"] == "{{ bos_token }}" and cfg["tokenizer_class"] == "LlamaTokenizer"
    assert ext.check_agreement(out, ["中国人民", "Hello world"])["mismatches"] == {"slow": 0, "fast": 0}
    assert open_tokenizer(out).pieces() == ext.pieces()


def test_unknown_directory_is_an_error(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer.model"):
        family_of(tmp_path)
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "WordPiece"}}))
    with pytest.raises(TokenizerError, match="not a byte-level BPE"):
        family_of(tmp_path)
