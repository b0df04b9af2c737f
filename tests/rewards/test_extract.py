"""r1lab.rewards.extract: table-driven cases. Each row says why it matters."""

from __future__ import annotations

import pytest

from r1lab.rewards.extract import EXTRACTORS, extract_answer, from_answer_tag, from_boxed, from_last_number

DEFAULT = ("answer_tag", "boxed", "last_number")

# (text, methods, expected, id) — the id doubles as the reason the case exists.
CASES = [
    # --- \boxed -----------------------------------------------------------------------------------------------
    (r"first \boxed{3}, then corrected: \boxed{4}", ("boxed",), "4", "several boxes: last wins (self-correction)"),
    (r"so \boxed{\frac{1}{2}}", ("boxed",), r"\frac{1}{2}", "nested braces kept whole, not cut at first }"),
    (r"\boxed{\sqrt{\frac{a}{b^{2}}}} done", ("boxed",), r"\sqrt{\frac{a}{b^{2}}}", "deep nesting"),
    (r"answer: \fbox{7}", ("boxed",), "7", "fbox is accepted like boxed"),
    (r"\boxed{ 12 }", ("boxed",), "12", "content is stripped"),
    (r"\boxed {5}", ("boxed",), "5", "whitespace between command and brace"),
    (r"\boxed{-3}", ("boxed",), "-3", "negative inside a box"),
    (r"the answer is \boxed{42", ("boxed",), None, "unclosed box (truncated generation) -> None"),
    (r"no box here, just 42", ("boxed",), None, "no box -> None"),
    (r"\boxed{\{1, 2\}}", ("boxed",), r"\{1, 2\}", "escaped braces balance out"),
    # --- <answer> tags ----------------------------------------------------------------------------------------
    (r"<answer>\boxed{5}</answer>", DEFAULT, "5", "a box inside the answer tag is unwrapped"),
    ("<answer>3</answer> wait... <answer>5</answer>", ("answer_tag",), "5", "several answer tags: last wins"),
    ("<answer>\n  17 \n</answer>", ("answer_tag",), "17", "multi-line tag content is stripped"),
    ("<ANSWER>9</ANSWER>", ("answer_tag",), "9", "tags are case-insensitive"),
    ("<answer>9", ("answer_tag",), None, "unclosed answer tag -> None"),
    ("<answer>x = 1, y = 2</answer>", ("answer_tag",), "x = 1, y = 2", "non-numeric answers pass through verbatim"),
    # --- last number ------------------------------------------------------------------------------------------
    ("3 apples and 5 pears make 8", ("last_number",), "8", "last number wins"),
    ("the temperature fell to -7", ("last_number",), "-7", "negative number keeps its sign"),
    ("pi is about 3.14", ("last_number",), "3.14", "decimal"),
    ("it costs -0.5 or .5 dollars", ("last_number",), ".5", "bare leading-dot decimal"),
    ("a total of 1,234 items", ("last_number",), "1234", "thousands comma removed"),
    ("population 1,234,567.89", ("last_number",), "1234567.89", "several thousands groups + decimals"),
    ("The answer is 42.", ("last_number",), "42", "sentence-final period is not a decimal point"),
    ("values 1, 2, 3", ("last_number",), "3", "comma-separated list is not a thousands number"),
    ("it was 10%", ("last_number",), "10", "percent sign does not block the number"),
    ("5 plus x2", ("last_number",), "5", "digit inside a word (x2) is not a number"),
    ("x2 and y3", ("last_number",), None, "only digits inside words -> None"),
    ("5 then 2x", ("last_number",), "5", "digit glued to a following letter is not a number"),
    ("3-5", ("last_number",), "5", "a hyphen after a digit is not a minus sign"),
    ("no numbers at all", ("last_number",), None, "no number -> None"),
    ("", DEFAULT, None, "empty completion -> None"),
    # --- method order and fall-through ------------------------------------------------------------------------
    ("<answer>7</answer> then 9", DEFAULT, "7", "answer tag beats a later number"),
    (r"\boxed{2} and <answer>3</answer>", DEFAULT, "3", "answer_tag is tried before boxed by default"),
    (r"\boxed{2} and <answer>3</answer>", ("boxed", "answer_tag"), "2", "configured order is respected"),
    ("<answer>7</answer> then 9", ("last_number",), "9", "methods=('last_number',) ignores tags"),
    ("<answer>7</answer>", ("boxed",), None, "a method not listed is never used"),
    (r"<answer></answer> \boxed{6} 8", DEFAULT, "6", "empty answer tag falls through to the next method"),
    ("<answer>   </answer> so 8", DEFAULT, "8", "whitespace-only tag counts as empty"),
    (r"\boxed{} so 8", ("boxed", "last_number"), "8", "empty box falls through"),
    (r"the answer is \boxed{42", DEFAULT, "42", "unclosed box falls through to last number"),
    ("nothing to see", DEFAULT, None, "no method finds anything -> None"),
]


@pytest.mark.parametrize("text, methods, expected", [c[:3] for c in CASES], ids=[c[3] for c in CASES])
def test_extract_answer(text, methods, expected):
    assert extract_answer(text, methods) == expected


def test_default_methods():
    # The default order is answer_tag, boxed, last_number.
    assert extract_answer(r"<answer>1</answer> \boxed{2} 3") == "1"
    assert extract_answer(r"\boxed{2} 3") == "2"
    assert extract_answer("2 3") == "3"


def test_methods_accept_a_list():
    assert extract_answer("<answer>7</answer> 9", ["last_number"]) == "9"


def test_unknown_method_raises():
    # A typo in the config must fail loudly rather than silently extract nothing.
    with pytest.raises(KeyError):
        extract_answer("42", ("last_numbr",))


def test_extractor_table():
    assert EXTRACTORS == {"answer_tag": from_answer_tag, "boxed": from_boxed, "last_number": from_last_number}
    # Raw extractors return "" (not None) for empty content; extract_answer is what turns "" into fall-through.
    assert from_answer_tag("<answer> </answer>") == ""
    assert from_boxed(r"\boxed{}") == ""
