"""GSM8K as the 13B table scores it: the published 8-shot chain-of-thought prompt, a greedy answer of at most 256
new tokens, and ColossalEval's answer check (its `gsm_accuracy`), restated here:

1. the generation is cut at its first blank line (first "\n\n\n", then first "\n\n") and before any "Question:";
2. only the text after its last "answer is" is read (all of it when there is none);
3. in that text: the last number (an optional "-", a digit, then digits "." ","), and the last number written
   after an "=" (optionally "$"-prefixed); each loses its commas, one trailing ".", then a trailing ".00", then a
   trailing ".0"; the "=" one also loses its "$";
4. the answer is the "=" number when there is one, else the last number, read as a Python number literal
   ("01" or "1.2.3" are no number: wrong);
5. the gold is the number after "#### " in the reference solution (commas removed), read the same way;
6. correct when the two are equal as numbers (20 == 20.0).

The prompt: the eight worked examples below, each "Question: <q>\nLet's think step by step\n<steps>\nThe answer
is <n>", joined by blank lines, then a blank line and "Question: <q>\nLet's think step by step\n". They are the
published prompt's examples (GSM8K training problems), kept as data so that the prompt is exactly the published
one.
"""

from __future__ import annotations

import ast
import re

from cpt.core.errors import EvalError

_GOLD = re.compile(r"#### (\-?[0-9\.\,]+)")
_NUMBER = re.compile(r"(\-?[0-9][0-9\.\,]*)")
_AFTER_EQUALS = re.compile(r"=\s*(\$?-?[0-9][0-9\.\,]*)")

DEMONSTRATIONS = (
    {
        "question": "In 2004, there were 60 kids at a cookout. In 2005, half the number of kids came to the cookout as compared to 2004. In 2006, 2/3 as many kids came to the cookout as in 2005. How many kids came to the cookout in 2006?",
        "steps": [
            "In 2005, 60/2=30 kids came to the cookout.",
            "In 2006, 30/3*2=20 kids came to the cookout.",
        ],
        "answer": "20",
    },
    {
        "question": "Zilla spent 7% of her monthly earnings on rent, half of it on her other monthly expenses, and put the rest in her savings. If she spent $133 on her rent, how much does she deposit into her savings account in a month?",
        "steps": [
            "Since $133 is equal to 7% of her earnings, then 1% is equal to $133/7 = $19.",
            "The total monthly earning of Zilla is represented by 100%, so $19 x 100 = $1900 is her monthly earnings.",
            "So, $1900/2 = $950 is spent on her other monthly expenses.",
            "The total amount spent on the rent and other monthly expenses is $133 + $950 = $1083.",
            "Hence, she saves $1900 - $1083 = $817 per month.",
        ],
        "answer": "817",
    },
    {
        "question": "If Buzz bought a pizza with 78 slices at a restaurant and then decided to share it with the waiter in the ratio of 5:8, with Buzz's ratio being 5, what's twenty less the number of slices of pizza that the waiter ate?",
        "steps": [
            "The total ratio representing the slices of pizza that Buzz bought is 5+8=13",
            "If he shared the slices of pizza with the waiter, the waiter received a fraction of 8/13 of the total number of slices, which totals 8/13 * 78 = 48 slices",
            "Twenty less the number of slices of pizza that the waiter ate is 48-20 = 28",
        ],
        "answer": "28",
    },
    {
        "question": "Jame gets a raise to $20 per hour and works 40 hours a week.  His old job was $16 an hour for 25 hours per week.  How much more money does he make per year in his new job than the old job if he works 52 weeks a year?",
        "steps": [
            "He makes 20*40=$800 per week",
            "He used to make 16*25=$400 per week",
            "So his raise was 800-400=$400 per week",
            "So he makes 400*52=$20,800 per year more",
        ],
        "answer": "20800",
    },
    {
        "question": "Mr. Gardner bakes 20 cookies, 25 cupcakes, and 35 brownies for his second-grade class of 20 students. If he wants to give each student an equal amount of sweet treats, how many sweet treats will each student receive?",
        "steps": [
            "Mr. Gardner bakes a total of 20 + 25 + 35 = 80 sweet treats",
            "Each student will receive 80 / 20 = 4 sweet treats",
        ],
        "answer": "4",
    },
    {
        "question": "A used car lot has 24 cars and motorcycles (in total) for sale. A third of the vehicles are motorcycles, and a quarter of the cars have a spare tire included. How many tires are on the used car lot’s vehicles in all?",
        "steps": [
            "The used car lot has 24 / 3 = 8 motorcycles with 2 tires each.",
            "The lot has 24 - 8 = 16 cars for sale",
            "There are 16 / 4 = 4 cars with a spare tire with 5 tires each.",
            "The lot has 16 - 4 = 12 cars with 4 tires each.",
            "Thus, the used car lot’s vehicles have 8 * 2 + 4 * 5 + 12 * 4 = 16 + 20 + 48 = 84 tires in all.",
        ],
        "answer": "84",
    },
    {
        "question": "Norma takes her clothes to the laundry. She leaves 9 T-shirts and twice as many sweaters as T-shirts in the washer. When she returns she finds 3 sweaters and triple the number of T-shirts. How many items are missing?",
        "steps": [
            "Norma left 9 T-shirts And twice as many sweaters, she took 9 * 2= 18 sweaters",
            "Adding the T-shirts and sweaters, Norma left 9 + 18 = 27 clothes",
            "When she came back, she found 3 sweaters And triple the number of T-shirts, she found 3 * 3 = 9 T-shirts",
            "Adding the T-shirts and sweaters, Norma found 3 + 9 = 12 clothes",
            "Subtracting the clothes she left from the clothes she found, 27 - 12 = 15 clothes are missing",
        ],
        "answer": "15",
    },
    {
        "question": "Adam has an orchard. Every day for 30 days he picks 4 apples from his orchard. After a month, Adam has collected all the remaining apples, which were 230. How many apples in total has Adam collected from his orchard?",
        "steps": [
            "During 30 days Adam picked 4 * 30 = 120 apples.",
            "So in total with all the remaining apples, he picked 120 + 230 = 350 apples from his orchard.",
        ],
        "answer": "350",
    },
)


def demonstrations() -> list[str]:
    return [query(d["question"]) + "\n".join(d["steps"]) + f"\nThe answer is {d['answer']}" for d in DEMONSTRATIONS]


def query(question: str) -> str:
    """A question as the prompt asks it; the model goes on with its steps."""
    return f"Question: {question}\nLet's think step by step\n"


def number(text: str) -> int | float | None:
    """The value of a Python number literal ("1200", "-3", "2.5", "5."); None for anything else ("01", "1.2.3")."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _tidy(match: str) -> str:
    s = match.replace(",", "")
    if s.endswith("."):
        s = s[:-1]
    if s.endswith(".00"):
        s = s[:-3]
    if s.endswith(".0"):
        s = s[:-2]
    return s


def gold_answer(reference: str) -> int | float | None:
    """The number after "#### " in a GSM8K solution (None when there is none)."""
    m = _GOLD.search(reference)
    return None if m is None else number(m.group(1).strip().replace(",", ""))


def cut(generation: str) -> str:
    """Steps 1: the generation up to its first blank line and before any "Question:"."""
    return generation.split("\n\n\n")[0].split("\n\n")[0].split("Question:")[0]


def extract_answer(generation: str) -> int | float | None:
    """Steps 1-4: the model's answer, or None when it gives no number."""
    tail = cut(generation).split("answer is")[-1]
    found = []
    numbers = _NUMBER.findall(tail)
    if numbers:
        found.append(_tidy(numbers[-1]))
    after_equals = _AFTER_EQUALS.findall(tail)
    if after_equals:
        found.append(_tidy(after_equals[-1]).replace("$", ""))
    return number(found[-1]) if found else None


def is_correct(generation: str, reference: str) -> bool:
    gold = gold_answer(reference)
    if gold is None:
        raise EvalError(f"reference without a '#### <number>' answer: {reference[-80:]!r}")
    got = extract_answer(generation)
    return got is not None and got == gold
