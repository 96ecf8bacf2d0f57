"""cpt.model (rows, init, safetensors_io): new rows by each method vs. an independent computation; everything else untouched."""

from __future__ import annotations

import json
import math
import os

import _spm_fixtures as fx
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors import safe_open

from cpt.core.errors import ConfigError, ModelError
from cpt.model.base import create_tiny_llama
from cpt.model.cli import cli_init_embeddings
from cpt.model.init import init_embeddings, run_init
from cpt.model.rows import old_token_ids
from cpt.model.safetensors_io import write_safetensors_subset
from cpt.model.weights import EMBED_NAME, HEAD_NAME, read_layout

TINY = {"num_hidden_layers": 2, "hidden_size": 32, "num_attention_heads": 4, "num_key_value_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 256}


@pytest.fixture(scope="module")
def toks(tokenizer_pair):
    return tokenizer_pair


@pytest.fixture(scope="module")
def models(toks, tmp_path_factory):
    """Tiny source models: fp32 untied, fp32 tied, bf16 untied, sharded safetensors, .bin."""
    from transformers import AutoModelForCausalLM

    base = toks[0]
    root = tmp_path_factory.mktemp("models")
    create_tiny_llama(root / "fp32", base, {**TINY, "seed": 1})
    create_tiny_llama(root / "tied", base, {**TINY, "seed": 2, "tie_word_embeddings": True})
    create_tiny_llama(root / "bf16", base, {**TINY, "seed": 3, "torch_dtype": "bfloat16"})
    m = AutoModelForCausalLM.from_pretrained(root / "fp32")
    m.save_pretrained(root / "sharded", max_shard_size="60KB")
    m.save_pretrained(root / "bin", safe_serialization=False)
    for d in ("sharded", "bin"):
        fx.save_hf_tokenizer(_proto(base), root / d)
    return root


def _proto(tok_dir):
    from sentencepiece import sentencepiece_model_pb2 as pb

    p = pb.ModelProto()
    p.ParseFromString((tok_dir / "tokenizer.model").read_bytes())
    return p


def all_tensors(model_dir) -> dict[str, torch.Tensor]:
    layout = read_layout(model_dir)
    out = {}
    for f in layout.files:
        if layout.format == "safetensors":
            with safe_open(str(model_dir / f), framework="pt") as h:
                out.update({k: h.get_tensor(k) for k in h.keys()})
        else:
            out.update(torch.load(model_dir / f, weights_only=True))
    return out


def raw(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes()


def reference_ids(old_tok, pieces):
    """What the reference init_model.py feeds the old rows with: the HF slow LlamaTokenizer, no bos/eos."""
    from transformers import LlamaTokenizer

    t = LlamaTokenizer.from_pretrained(old_tok)
    t.add_bos_token = False
    t.add_eos_token = False
    return [t([p])["input_ids"][0] for p in pieces]


# ------------------------------------------------------------------------------------------------ subword ids

def test_default_subword_ids_are_the_reference_tokenization(toks):
    base, _, new = toks
    ours = old_token_ids(base, new, dummy_prefix=True)
    assert ours == reference_ids(base, new)
    # like LLaMA-2 on "中国": a lone dummy-prefix "▁" leads the encoding of Chinese pieces
    prefix = next(i for i, p in enumerate(_proto(base).pieces) if p.piece == "\u2581")
    assert sum(1 for x in ours if x[0] == prefix) >= len(new) // 2


def test_no_dummy_prefix_encodes_bare_text(toks):
    base, _, new = toks
    sp = fx.sp_processor(base)
    prefix = sp.piece_to_id("\u2581")
    ours = old_token_ids(base, new, dummy_prefix=False)
    checked = 0
    for piece, ids in zip(new, ours):
        if not piece.startswith("\u2581"):
            assert sp.decode(ids) == piece.replace("\u2581", " ")
            assert ids[0] != prefix
            checked += 1
    assert checked >= len(new) - 2


# ------------------------------------------------------------------------------------------------ methods

NOISE = 0.5  # mean_noise_scale in the tests (large enough to see)


def expected_new_rows(method, W_old, n_new, ids, seed):
    """Each method's definition, computed here independently (numpy float64 / torch mean)."""
    if method == "subword_mean":
        return torch.stack([W_old[torch.tensor(x)].float().mean(0) for x in ids])
    X = W_old.double().numpy()
    mu = X.mean(0)
    if method == "subword_mean_norm":
        out = []
        for x in ids:
            rows = X[np.array(x)]
            m = rows.mean(0)
            out.append(m * np.linalg.norm(rows, axis=1).mean() / np.linalg.norm(m))
        return torch.from_numpy(np.stack(out)).float()
    if method == "mean":
        return torch.from_numpy(np.tile(mu, (n_new, 1))).float()
    z = torch.randn(n_new, X.shape[1], generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    if method == "mean_noise":
        return torch.from_numpy(mu + NOISE * X.std(0, ddof=1) * z.double().numpy()).float()
    L = np.linalg.cholesky(np.cov(X, rowvar=False))
    return torch.from_numpy(mu + z.double().numpy() @ L.T).float()


@pytest.mark.parametrize("method", ["subword_mean", "mean", "multivariate", "mean_noise", "subword_mean_norm"])
def test_method_rows_match_definition_and_nothing_else_changes(toks, models, tmp_path, method):
    base, ext, new = toks
    src = models / "fp32"
    out = tmp_path / "out"
    summary = init_embeddings(src, base, ext, out, method=method, seed=11, mean_noise_scale=NOISE)
    n_old, n_tok = summary["old_vocab"], summary["tokenizer_vocab"]
    assert n_tok - n_old == len(new) and summary["vocab_size"] == n_tok
    before, after = all_tensors(src), all_tensors(out)
    assert set(before) == set(after)
    ids = reference_ids(base, new)
    for k, name in enumerate([EMBED_NAME, HEAD_NAME]):
        W, V = before[name], after[name]
        assert V.shape == (n_tok, W.shape[1]) and V.dtype == W.dtype
        assert raw(V[:n_old]) == raw(W)  # old rows bit-identical
        torch.testing.assert_close(V[n_old:], expected_new_rows(method, W, len(new), ids, 11 + k),
                                   rtol=1e-5, atol=1e-6)
    for name in before.keys() - {EMBED_NAME, HEAD_NAME}:
        assert raw(after[name]) == raw(before[name]), name  # byte-identical
    if method in ("multivariate", "mean_noise"):  # input and output rows come from different seeds
        assert not torch.equal(after[EMBED_NAME][n_old:], after[HEAD_NAME][n_old:])
    if method == "subword_mean_norm":  # longer than the plain means wherever a piece averages several rows
        plain = expected_new_rows("subword_mean", before[EMBED_NAME], len(new), ids, 0)
        multi = torch.tensor([len(x) > 1 for x in ids])
        assert multi.any()
        assert (after[EMBED_NAME][n_old:][multi].norm(dim=1) > plain[multi].norm(dim=1) * 1.01).all()


def test_multivariate_samples_have_old_mean_and_covariance(toks, models, tmp_path):
    from cpt.model.rows import multivariate_rows

    W = all_tensors(models / "fp32")[EMBED_NAME]
    S = multivariate_rows(W, 20000, seed=5).double()
    Wd = W.double()
    assert (S.mean(0) - Wd.mean(0)).abs().max() < 4 * Wd.std(0).max() / math.sqrt(20000) * 3
    cov_s, cov_w = torch.cov(S.T), torch.cov(Wd.T)
    assert (cov_s - cov_w).abs().max() < 0.1 * cov_w.diagonal().mean()


def test_bf16_dtype_preserved(toks, models, tmp_path):
    base, ext, new = toks
    init_embeddings(models / "bf16", base, ext, tmp_path / "out")
    before, after = all_tensors(models / "bf16"), all_tensors(tmp_path / "out")
    n_old = before[EMBED_NAME].shape[0]
    for name in (EMBED_NAME, HEAD_NAME):
        assert after[name].dtype == torch.bfloat16
        assert raw(after[name][:n_old]) == raw(before[name])
        want = expected_new_rows("subword_mean", before[name], len(new), reference_ids(base, new), 0)
        torch.testing.assert_close(after[name][n_old:].float(), want.bfloat16().float(), rtol=8e-3, atol=1e-4)
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["torch_dtype"] == "bfloat16"


def test_tied_embeddings_stay_tied(toks, models, tmp_path):
    from transformers import AutoModelForCausalLM

    base, ext, new = toks
    init_embeddings(models / "tied", base, ext, tmp_path / "out", method="subword_mean")
    layout = read_layout(tmp_path / "out")
    assert HEAD_NAME not in layout.weight_map
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    assert model.config.tie_word_embeddings
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    assert model.lm_head.weight.shape[0] == len(fx.sp_processor(ext))


def test_padding_rows_config_and_hf_loading(toks, models, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base, ext, new = toks
    s = init_embeddings(models / "fp32", base, ext, tmp_path / "out", pad_to_multiple_of=64)
    n_tok = len(fx.sp_processor(ext))
    assert s["vocab_size"] % 64 == 0 and s["vocab_size"] - n_tok == s["padded_rows"] and 0 < s["padded_rows"] < 64
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert cfg["vocab_size"] == s["vocab_size"] and cfg["cpt_tokenizer_vocab_size"] == n_tok
    assert cfg["cpt_base_vocab_size"] == s["old_vocab"]  # where a LoRA stage's new_rows start
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    tok = AutoTokenizer.from_pretrained(tmp_path / "out")
    assert len(tok) == n_tok
    ids = tok("中国人民 the people", return_tensors="pt").input_ids
    assert model(ids).logits.shape[-1] == s["vocab_size"]
    W = all_tensors(models / "fp32")[EMBED_NAME]
    pad = model.model.embed_tokens.weight[n_tok:].detach()
    torch.testing.assert_close(pad, W.double().mean(0).float().expand_as(pad))
    # an already padded model is accepted as a source (its unpadded size is in config.json)
    init_embeddings(tmp_path / "out", ext, ext, tmp_path / "again", pad_to_multiple_of=128)
    assert json.loads((tmp_path / "again" / "config.json").read_text())["vocab_size"] % 128 == 0


def test_old_token_logits_unchanged(toks, models, tmp_path):
    """Old rows untouched => logits over old ids are the old model's on any old-token input."""
    from transformers import AutoModelForCausalLM

    base, ext, _ = toks
    init_embeddings(models / "fp32", base, ext, tmp_path / "out")
    a = AutoModelForCausalLM.from_pretrained(models / "fp32")
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "out")
    ids = torch.tensor([fx.sp_processor(base).encode("It was a fine day in the town.", add_bos=True)])
    with torch.no_grad():
        la, lb = a(ids).logits, b(ids).logits
    assert torch.equal(la, lb[..., :la.shape[-1]])


def test_sharded_source_untouched_shards_linked(toks, models, tmp_path):
    base, ext, _ = toks
    src = models / "sharded"
    src_layout = read_layout(src)
    assert len(src_layout.files) >= 3
    s = init_embeddings(src, base, ext, tmp_path / "out")
    out_layout = read_layout(tmp_path / "out")
    linked = [f for f, how in s["files"].items() if how.startswith("hardlink")]
    assert linked, s["files"]
    src_inodes = {os.stat(src / f).st_ino for f in src_layout.files}
    assert all(os.stat(tmp_path / "out" / f).st_ino in src_inodes for f in linked)
    before, after = all_tensors(src), all_tensors(tmp_path / "out")
    for name in before.keys() - {EMBED_NAME, HEAD_NAME}:
        assert raw(after[name]) == raw(before[name])
    assert set(out_layout.weight_map) == set(src_layout.weight_map)
    idx = json.loads((tmp_path / "out" / "model.safetensors.index.json").read_text())
    assert idx["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in after.values())
    # --copy: no links
    s2 = init_embeddings(src, base, ext, tmp_path / "copied", link="copy")
    assert not any(how.startswith("hardlink") for how in s2["files"].values())


def test_bin_source_converted_to_safetensors(toks, models, tmp_path):
    from transformers import AutoModelForCausalLM

    base, ext, _ = toks
    s = init_embeddings(models / "bin", base, ext, tmp_path / "out")
    assert s["source_format"] == "bin"
    assert not list((tmp_path / "out").glob("*.bin"))
    before, after = all_tensors(models / "bin"), all_tensors(tmp_path / "out")
    for name in before.keys() - {EMBED_NAME, HEAD_NAME}:
        assert raw(after[name]) == raw(before[name])
    AutoModelForCausalLM.from_pretrained(tmp_path / "out")


def test_same_inputs_same_bytes(toks, models, tmp_path):
    base, ext, _ = toks
    for d in ("a", "b"):
        init_embeddings(models / "fp32", base, ext, tmp_path / d, method="multivariate", seed=3)
    for f in sorted(p.name for p in (tmp_path / "a").iterdir()):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes(), f


def test_wrong_pairings_are_one_model_error(toks, models, tmp_path):
    base, ext, _ = toks
    with pytest.raises(ModelError, match="does not match the tokenizer"):
        init_embeddings(models / "fp32", ext, ext, tmp_path / "o")  # model is 32k-style base, tokenizer extended
    # an "extended" tokenizer that does not start with the base pieces
    other = fx.train_tiny_tokenizer(tmp_path / "other", fx.real_text(4000, 4000)[0], vocab_size=1700)
    with pytest.raises(ModelError, match="not an extension"):
        init_embeddings(models / "fp32", base, other, tmp_path / "o")
    with pytest.raises(ConfigError, match="config key model.init.method: 'random' is not one of"):
        init_embeddings(models / "fp32", base, ext, tmp_path / "o", method="random")
    assert not (tmp_path / "o").exists()


def test_safetensors_subset_streams_bytes(models, tmp_path):
    src = models / "fp32" / "model.safetensors"
    kept = write_safetensors_subset(src, tmp_path / "x.safetensors", {EMBED_NAME})
    assert EMBED_NAME not in kept
    with safe_open(str(src), framework="pt") as a, safe_open(str(tmp_path / "x.safetensors"), framework="pt") as b:
        assert set(b.keys()) == set(a.keys()) - {EMBED_NAME}
        assert b.metadata() == a.metadata()
        for k in b.keys():
            assert raw(a.get_tensor(k)) == raw(b.get_tensor(k))


# ------------------------------------------------------------------------------------------------ report, CLI

def _heldout(tmp_path):
    en, zh = fx.real_text(2500, 2500)
    paths = {}
    for lang, lines in (("en", en), ("zh", zh)):
        p = tmp_path / f"{lang}.jsonl"
        p.write_text("".join(json.dumps({"source": "", "target": t, "category": lang}, ensure_ascii=False) + "\n"
                             for t in lines), encoding="utf-8")
        paths[lang] = [p]
    return paths


def test_run_init_writes_report_and_provenance(toks, models, tmp_path):
    base, ext, new = toks
    heldout = _heldout(tmp_path)
    others = ["mean", "multivariate", "mean_noise", "subword_mean_norm"]
    section = {"method": "subword_mean", "pad_to_multiple_of": 64, "seed": 1,
               "report": {"max_tokens": 600, "seq_len": 64, "batch_size": 4, "compare_methods": others}}
    report = run_init(section, models / "fp32", base, ext, tmp_path / "init", heldout)
    on_disk = json.loads((tmp_path / "init" / "report.json").read_text())
    assert on_disk["summary"] == report["summary"]
    prov = json.loads((tmp_path / "init" / "provenance.json").read_text())
    assert prov["stage"] == "model/init" and prov["config"] == section
    assert set(report["norms"]) == {"subword_mean", *others}
    new_norm = report["norms"]["subword_mean"]["input_embeddings"]["new"]
    assert new_norm["rows"] == len(new)
    assert report["norms"]["mean"]["lm_head"]["new"]["std"] == 0.0  # all new rows identical
    for lang in ("en", "zh"):
        rec = report["loss"][lang]
        assert 0 < rec["before"]["tokens"] <= 600
        for m in ("subword_mean", *others):
            a = rec["after"][m]
            assert a["bytes"] == rec["before"]["bytes"]
            assert math.isclose(a["delta_loss"], a["loss"] - rec["before"]["loss"], abs_tol=1e-5)
    assert report["english_loss_moved"] == report["loss"]["en"]["after"]["subword_mean"]["delta_loss"]
    # one comparison row per method: step-0 bits per byte per language and the English next-token KL
    rows = {r["method"]: r for r in report["comparison"]}
    assert list(rows) == ["subword_mean", *others]
    for m, r in rows.items():
        assert r["zh_bits_per_byte"] == report["loss"]["zh"]["after"][m]["bits_per_byte"]
        assert r["en_kl_nats"] == report["kl_en"]["methods"][m]["mean_kl_nats"] > 0  # new lm_head rows take mass
    assert isinstance(report["kl_en"]["english_ids_identical"], bool)  # the tiny extension may split English anew
    assert report["kl_en"]["methods"]["mean"]["positions"] == report["loss"]["en"]["before"]["tokens"]
    # a random tiny model is near uniform: its loss is about ln(vocab)
    assert abs(report["loss"]["en"]["before"]["loss"] - math.log(report["vocab"]["old"])) < 0.5


def test_cli_with_reference_argument_names(toks, models, tmp_path):
    base, ext, _ = toks
    heldout = _heldout(tmp_path)
    args = ["--source_model_and_tokenizer_path", str(models / "fp32"), "--target_tokenizer_path", str(ext),
            "--target_model_path", str(tmp_path / "out"), "--method", "mean", "--pad-to-multiple-of", "32",
            "--heldout", f"en={heldout['en'][0]}", "--report-max-tokens", "300"]
    res = CliRunner().invoke(cli_init_embeddings, args)
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["vocab"]["matrix_rows"] % 32 == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["method"] == "mean" and set(report["loss"]) == {"en"}


def test_heldout_by_lang(tmp_path):
    from cpt.model.init import heldout_by_lang

    for cat in ("zh_news", "en_novel", "en_plays"):
        (tmp_path / f"{cat}.jsonl").write_text('{"source": "", "target": "x", "category": "%s"}\n' % cat)
    langs = {"zh_news": "zh", "en_novel": "en", "en_plays": "en", "zh_missing": "zh"}
    assert heldout_by_lang(tmp_path, langs) == {
        "en": [str(tmp_path / "en_novel.jsonl"), str(tmp_path / "en_plays.jsonl")],
        "zh": [str(tmp_path / "zh_news.jsonl")],
    }


def test_reference_tokenization_on_the_real_llama2_vocabulary(tmp_path):
    """The reference's old_tokenizer(piece) on LLaMA-2: "中国" -> ["▁", "中", "国"]; our default matches it."""
    llama = fx.llama2_tokenizer(tmp_path / "llama2")
    assert len(fx.sp_processor(llama)) == 32000
    pieces = ["中国", "我们", "的", "人民", "\u2581中国", "hello"]
    ours = old_token_ids(llama, pieces, dummy_prefix=True)
    assert ours == reference_ids(llama, pieces)
    assert ours[0] == [29871, 30275, 30356]  # "▁", "中", "国": the lone dummy-prefix row takes part
    assert old_token_ids(llama, ["中国"], dummy_prefix=False) == [[30275, 30356]]


# ------------------------------------------------------------------------------------------------ KL
def test_next_token_kl_zero_for_identical_model_positive_otherwise(toks, models, tmp_path):
    from transformers import AutoModelForCausalLM

    from cpt.measure.kl import next_token_kl

    base, ext, _ = toks
    a = AutoModelForCausalLM.from_pretrained(models / "fp32").eval()
    same = AutoModelForCausalLM.from_pretrained(models / "fp32").eval()
    sp = fx.sp_processor(base)
    docs = [sp.encode(t) for t in fx.real_text(400, 400)[0][:6]]
    r0 = next_token_kl(a, same, docs, bos=1, max_length=32, pad_id=0, max_batch_tokens=100)
    assert r0["positions"] == sum(len(d) for d in docs)  # every token after BOS predicted once
    assert r0["mean_kl_nats"] == 0.0 and r0["max_kl_nats"] == 0.0
    # an extended model (new lm_head rows) moves probability away from the old tokens
    init_embeddings(models / "fp32", base, ext, tmp_path / "init", method="mean")
    b = AutoModelForCausalLM.from_pretrained(tmp_path / "init").eval()
    r1 = next_token_kl(a, b, docs, bos=1, max_length=32, pad_id=0, max_batch_tokens=100)
    assert r1["mean_kl_nats"] > 0
    # independent: full forward of each window, KL over the old vocabulary of softmax(a) vs softmax(b)
    from cpt.measure.bpb import windows

    total, n = 0.0, 0
    n_old = a.config.vocab_size
    with torch.no_grad():
        for d in docs:
            for w in windows(d, 1, 32):
                x = torch.tensor([w])
                p = torch.log_softmax(a(x).logits[0, :-1].double(), -1)
                q = torch.log_softmax(b(x).logits[0, :-1].double(), -1)[:, :n_old]
                total += float((p.exp() * (p - q)).sum())
                n += len(w) - 1
    assert r1["mean_kl_nats"] == pytest.approx(total / n, rel=1e-4)
