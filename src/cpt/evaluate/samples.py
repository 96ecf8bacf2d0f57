"""Small stand-in benchmarks in the public layouts (`cpt smoke-inputs`: a locked config's evaluation run end to end
on CPU without the real data). One folder per published benchmark name, each in the layout its format reads:

  mmlu/data/{dev,test}/<subject>_{dev,test}.csv        MMLU CSV release (no header)
  cmmlu/{dev,test}/<subject>.csv                       CMMLU (header ,Question,A,B,C,D,Answer)
  ceval/{dev,val,test}/<subject>_<split>.csv           C-Eval (header id,question,A,B,C,D,answer[,explanation])
  agieval/v1/<task>.jsonl + agieval/few_shot_prompts.csv   AGIEval (a 4-choice task, a 5-option task left out)
  gaokao/data/Multiple-choice_Questions/<years>_<Subject>.json   GAOKAO-Bench (a scored file, a left-out file)
  gsm/grade_school_math/data/test.jsonl                GSM8K

The questions are simple made-up ones (the real benchmarks are the user's); they exercise every loader, prompt
and protocol rule, not a model's knowledge.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

EN = [("Which planet is closest to the sun?", ["Mercury", "Venus", "Earth", "Mars"], "A"),
      ("How many legs does a spider have?", ["Six", "Eight", "Ten", "Four"], "B"),
      ("What is the boiling point of water at sea level in Celsius?", ["50", "75", "100", "150"], "C"),
      ("Which gas do plants take in for photosynthesis?", ["Oxygen", "Nitrogen", "Helium", "Carbon dioxide"], "D"),
      ("What is 7 times 8?", ["56", "54", "64", "48"], "A"),
      ("Which ocean is the largest?", ["Atlantic", "Pacific", "Indian", "Arctic"], "B"),
      ("Who wrote Romeo and Juliet?", ["Dickens", "Austen", "Shakespeare", "Twain"], "C")]
ZH = [("中国的首都是哪里？", ["北京", "上海", "广州", "深圳"], "A"),
      ("一年有几个季节？", ["三个", "四个", "五个", "六个"], "B"),
      ("水的化学式是什么？", ["CO2", "O2", "H2O", "NaCl"], "C"),
      ("“床前明月光”的作者是谁？", ["杜甫", "白居易", "王维", "李白"], "D"),
      ("三角形的内角和是多少度？", ["180", "90", "360", "270"], "A"),
      ("长江流入哪个海？", ["渤海", "东海", "南海", "黄海"], "B"),
      ("一公里等于多少米？", ["10", "100", "1000", "10000"], "C")]
GSM = [("Tom has 3 apples and buys 4 more. How many apples does he have?", "Tom has 3+4=<<3+4=7>>7 apples.\n#### 7"),
       ("A box holds 12 pens. How many pens are in 3 boxes?", "3 boxes hold 3*12=<<3*12=36>>36 pens.\n#### 36")]


def _csv(path: Path, rows, header=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        if header:
            w.writerow(header)
        w.writerows(rows)


def _jsonl(path: Path, records) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def write_samples(root: str | Path) -> dict[str, str]:
    """Write every sample benchmark under `root`; returns name -> folder."""
    root = Path(root)
    dev, test = slice(0, 5), slice(5, 7)
    for subject in ("astronomy", "high_school_us_history"):
        for split, part in (("dev", dev), ("test", test)):
            _csv(root / "mmlu" / "data" / split / f"{subject}_{split}.csv", [[q, *c, a] for q, c, a in EN[part]])
    for split, part in (("dev", dev), ("test", test)):
        _csv(root / "cmmlu" / split / "chinese_food_culture.csv",
             [[i, q, *c, a] for i, (q, c, a) in enumerate(ZH[part])], ["", "Question", "A", "B", "C", "D", "Answer"])
    _csv(root / "ceval" / "dev" / "computer_network_dev.csv", [[i, q, *c, a, "解析"] for i, (q, c, a) in enumerate(ZH[dev])],
         ["id", "question", "A", "B", "C", "D", "answer", "explanation"])
    _csv(root / "ceval" / "val" / "computer_network_val.csv", [[i, q, *c, a] for i, (q, c, a) in enumerate(ZH[test])],
         ["id", "question", "A", "B", "C", "D", "answer"])
    _csv(root / "ceval" / "test" / "computer_network_test.csv", [[i, q, *c] for i, (q, c, a) in enumerate(ZH[test])],
         ["id", "question", "A", "B", "C", "D"])
    opts = lambda c: [f"({L}){t}" for L, t in zip("ABCDE", c)]  # noqa: E731
    _jsonl(root / "agieval" / "v1" / "logiqa-zh.jsonl",
           [{"passage": None, "question": q, "options": opts(c), "label": a, "other": None} for q, c, a in ZH[test]])
    _jsonl(root / "agieval" / "v1" / "lsat-ar.jsonl",
           [{"passage": None, "question": q, "options": opts(c + ["None"]), "label": a, "other": None}
            for q, c, a in EN[test]])
    demos = [repr({"passage": None, "question": q, "options": opts(c), "label": a, "answer": None})
             for q, c, a in ZH[dev]]
    rows = []
    for k, d in enumerate(demos):
        rows += [[f"sample {k + 1}", d, d], [f"explanation {k + 1}", "解析", "解析"]]
    _csv(root / "agieval" / "few_shot_prompts.csv", rows, ["", "logiqa-zh", "lsat-ar"])
    mc = root / "gaokao" / "data" / "Multiple-choice_Questions"
    mc.mkdir(parents=True, exist_ok=True)
    block = lambda k, q, c: f"{k + 1}．{q}（　　）\n" + "".join(f"{L}．{t}\n" for L, t in zip("ABCD", c))  # noqa: E731
    (mc / "2010-2022_History_MCQs.json").write_text(json.dumps({"keywords": "2010-2022_History_MCQs", "example": [
        {"year": "2020", "question": block(k, q, c), "answer": [a], "analysis": "", "index": k, "score": 4}
        for k, (q, c, a) in enumerate(ZH)]}, ensure_ascii=False, indent=1), encoding="utf-8")
    (mc / "2010-2022_Physics_MCQs.json").write_text(json.dumps({"keywords": "2010-2022_Physics_MCQs", "example": [
        {"year": "2020", "question": block(0, *ZH[0][:2]), "answer": ["A", "B"], "analysis": "", "index": 0,
         "score": 6}]}, ensure_ascii=False, indent=1), encoding="utf-8")
    _jsonl(root / "gsm" / "grade_school_math" / "data" / "test.jsonl", [{"question": q, "answer": a} for q, a in GSM])
    return {name: str(root / name) for name in ("mmlu", "cmmlu", "ceval", "agieval", "gaokao", "gsm")}
