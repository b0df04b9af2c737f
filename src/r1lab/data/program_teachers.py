"""Programmatic teachers for procedural tasks: exact step-by-step solutions, with optional realistic mistakes.

They let the distillation route (generate -> filter -> journey -> sft) run offline on a CPU, in the role a strong
model plays in the R1 report's distillation and Sky-T1. Traces are short (tens of tokens for two-term addition)
so a 135M student can learn them, and end so that r1lab's default answer extraction (answer_tag, boxed,
last_number) recovers the answer:

* ``arithmetic`` (rg:basic_arithmetic, rg:chain_sum, or any question holding ``A + B - C``): column addition with
  carries and column subtraction with borrows, term by term; ends "So A + B = S." or ``<answer>S</answer>``.
* ``countdown`` (rg:countdown): a depth-first search over pairs of numbers (+, -, *, exact /) that uses every
  number once; shows the steps of the solution found and ends with ``\\boxed{expr}`` or ``<answer>expr</answer>``.

With probability ``error_rate`` a trace carries one mistake a person (or model) makes: a dropped carry or borrow,
a column sum off by one, or a wrong operator written in a countdown step. The trace stays self-consistent after
the mistake, so its final answer is wrong, and rejection sampling and journey learning (O1 Replication Journey,
arXiv 2410.18982) have wrong attempts to work with.
"""

from __future__ import annotations

import operator
import random
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable

from r1lab.types import Example

FORMATS = ("plain", "think")


@dataclass
class ProgramTrace:
    text: str  # the completion
    answer: str  # the answer the trace ends with (wrong when ``mistake`` is set)
    mistake: str | None = None  # kind of the injected mistake, None for an exact trace


def finish(lines: list[str], answer: str, fmt: str, plain_ending: str | None = None) -> str:
    """Join the steps and end them in ``fmt``: ``plain`` appends ``plain_ending`` (when the last step does not
    already end with the answer); ``think`` wraps the steps in ``<think>`` and the answer in ``<answer>`` (the
    R1-Zero template's layout)."""
    if fmt == "plain":
        return "\n".join(lines + ([plain_ending] if plain_ending else []))
    if fmt == "think":
        return "<think>\n" + "\n".join(lines) + "\n</think>\n<answer>" + answer + "</answer>"
    raise ValueError(f"unknown program teacher format {fmt!r}; allowed: {', '.join(FORMATS)}")


# ---------------------------------------------------------------------------------------------------------------
# Column arithmetic
# ---------------------------------------------------------------------------------------------------------------
_PLACES = ("Ones", "Tens", "Hundreds", "Thousands")


def _place(i: int) -> str:
    return _PLACES[i] if i < len(_PLACES) else f"10^{i}s"


def _digits(n: int, width: int) -> list[int]:
    """Digits of ``n`` >= 0, least significant first, padded with zeros to ``width``."""
    return [(n // 10**i) % 10 for i in range(width)]


@dataclass(frozen=True)
class Fault:
    """One mistake: ``kind`` (dropped_carry, dropped_borrow, slip) at column ``column`` of operation ``op_index``."""

    op_index: int
    column: int
    kind: str


def column_add(a: int, b: int, fault: Fault | None = None) -> tuple[list[str], int, list[tuple[int, str]]]:
    """Steps of a + b (a, b >= 0), the written result, and the (column, kind) places a mistake could go."""
    width = max(len(str(a)), len(str(b)))
    da, db = _digits(a, width), _digits(b, width)
    lines, written, spots, carry = [], [], [], 0
    for i in range(width):
        spots.append((i, "slip"))
        parts = [da[i], db[i]]
        if carry:
            spots.append((i, "dropped_carry"))
            if not (fault and fault.column == i and fault.kind == "dropped_carry"):
                parts.append(carry)
        s = sum(parts)
        if fault and fault.column == i and fault.kind == "slip":
            s = s + 1 if s == 0 or (i + a + b) % 2 else s - 1  # off by one, either way
        carry, digit = divmod(s, 10)
        written.append(digit)
        tail = f", write {digit} carry {carry}." if carry else f", write {digit}."
        lines.append(f"{_place(i)}: {' + '.join(map(str, parts))} = {s}{tail}")
    if carry:
        lines.append(f"{_place(width)}: carry {carry}, write {carry}.")
        written.append(carry)
    return lines, sum(d * 10**i for i, d in enumerate(written)), spots


def column_sub(a: int, b: int, fault: Fault | None = None) -> tuple[list[str], int, list[tuple[int, str]]]:
    """Steps of a - b (a >= b >= 0) with borrows, the written result, and the places a mistake could go."""
    width = len(str(a))
    da, db = _digits(a, width), _digits(b, width)
    lines, written, spots, borrow = [], [], [], 0
    for i in range(width):
        spots.append((i, "slip"))
        top = da[i]
        left = f"{top}"
        if borrow:
            spots.append((i, "dropped_borrow"))
            if not (fault and fault.column == i and fault.kind == "dropped_borrow"):
                top -= 1
                left = f"{da[i]} - 1"
        if top < db[i]:
            borrow, top = 1, top + 10
            d = top - db[i]
            text = f"{left} - {db[i]} needs a borrow: {top} - {db[i]} = {d}"
        else:
            borrow = 0
            d = top - db[i]
            text = f"{left} - {db[i]} = {d}"
        if fault and fault.column == i and fault.kind == "slip":
            d = d + 1 if d < 9 and (d == 0 or (i + a + b) % 2) else d - 1
            text = text.rsplit("=", 1)[0] + f"= {d}"
        written.append(d)
        lines.append(f"{_place(i)}: {text}.")
    return lines, sum(d * 10**i for i, d in enumerate(written)), spots


def signed_step(x: int, op: str, y: int, fault: Fault | None) -> tuple[list[str], int, list[tuple[int, str]]]:
    """x op y for a running total x (any sign) and a term y >= 0, reduced to one column addition or subtraction
    of magnitudes, with a sentence saying how when signs are involved."""
    if op not in "+-":
        raise ValueError(f"operator {op!r} not supported by program:arithmetic (only + and -)")
    sign_y = 1 if op == "+" else -1
    if x >= 0 and sign_y > 0:
        return column_add(x, y, fault)
    if x < 0 and sign_y < 0:  # -(|x| + y)
        lines, r, spots = column_add(-x, y, fault)
        return [f"Both negative: add {-x} + {y}, then make it negative."] + lines, -r, spots
    pos, neg = (x, y) if x >= 0 else (y, -x)  # pos - neg
    if pos >= neg:
        lines, r, spots = column_sub(pos, neg, fault)
        return ([] if x >= 0 else [f"Compute {pos} - {neg}."]) + lines, r, spots
    lines, r, spots = column_sub(neg, pos, fault)
    return [f"{neg} is larger than {pos}, so compute {neg} - {pos} and make it negative."] + lines, -r, spots


_EXPRESSION = re.compile(r"-?\d+(?:\s*[+\-*/]\s*-?\d+)+")
_TOKEN = re.compile(r"\d+|[+\-*/()]")


def arithmetic_terms(example: Example) -> tuple[list[int], list[str]]:
    """Numbers and operators of the problem: reasoning-gym's ``metadata.expression`` when present, else the first
    ``A + B - C`` span of the question."""
    entry = example.meta.get("entry") or {}
    expression = (entry.get("metadata") or {}).get("expression")
    if expression is None:
        found = _EXPRESSION.search(example.question)
        if not found:
            raise ValueError(f"program:arithmetic: no expression like 'A + B' in example {example.id}: "
                             f"{example.question[:80]!r}")
        expression = found.group()
    tokens = _TOKEN.findall(expression)
    if "(" in tokens or tokens[0] == "-":
        raise ValueError(f"program:arithmetic: parentheses and negation are not supported ({example.id}: "
                         f"{expression!r}); generate the task with allow_parentheses/allow_negation false")
    numbers, ops = [int(t) for t in tokens[0::2]], tokens[1::2]
    if len(numbers) != len(ops) + 1 or any(op not in "+-" for op in ops):
        raise ValueError(f"program:arithmetic: only + and - are supported ({example.id}: {expression!r})")
    return numbers, ops


def _arithmetic_run(numbers: list[int], ops: list[str], fault: Fault | None):
    lines, spots, total = [], [], numbers[0]
    multi = len(ops) > 1
    for k, (op, y) in enumerate(zip(ops, numbers[1:])):
        step, result, step_spots = signed_step(total, op, y, fault if fault and fault.op_index == k else None)
        if multi:
            lines.append(f"{'First' if k == 0 else 'Next'} {total} {op} {y}.")
        lines += step
        lines.append(f"So {total} {op} {y} = {result}.")
        spots += [Fault(k, col, kind) for col, kind in step_spots]
        total = result
    return lines, total, spots


def arithmetic_trace(example: Example, rng: random.Random, fmt: str = "plain", error_rate: float = 0.0) -> ProgramTrace:
    """Column-by-column solution of ``A op B op C ...`` (+/-), left to right; see the module docstring."""
    numbers, ops = arithmetic_terms(example)
    lines, total, spots = _arithmetic_run(numbers, ops, None)
    fault = None
    if rng.random() < error_rate:
        # Dropped carries and borrows are the classic column-arithmetic errors; prefer them when there is one.
        dropped = [s for s in spots if s.kind != "slip"]
        fault = rng.choice(dropped if dropped and rng.random() < 0.7 else spots)
        lines, total, _ = _arithmetic_run(numbers, ops, fault)
    # the last step, "So A + B = S.", ends with the answer: last_number extraction finds it in the plain layout
    return ProgramTrace(finish(lines, str(total), fmt), str(total), fault.kind if fault else None)


# ---------------------------------------------------------------------------------------------------------------
# Countdown
# ---------------------------------------------------------------------------------------------------------------
_OP_ORDER = ["+", "-", "*", "/"]
_INT_OPS: dict[str, Callable[[int, int], int | None]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b if a > b else None,  # positive intermediates only, like a person playing the game
    "*": lambda a, b: a * b,
    "/": lambda a, b: a // b if b > 1 and a % b == 0 else None,  # exact division only
}
_ARITH = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}


@dataclass(frozen=True)
class Node:
    value: Fraction
    expr: str
    compound: bool = False

    def operand(self) -> str:
        return f"({self.expr})" if self.compound else self.expr


def solve_countdown(numbers: list[int], target: int, rng: random.Random, max_nodes: int = 200_000):
    """Steps [(a, op, b, result)] (as Nodes) combining all ``numbers`` into ``target``, or None when impossible.

    Depth-first over pairs of the remaining numbers; the pair and operator orders are shuffled by ``rng`` so
    different samples find different solutions. Intermediate values stay positive integers (a - b only when
    a > b, a / b only when exact), so the search runs on plain ints; multisets of values already shown unsolvable
    are remembered. Expressions are built for the solution path only.
    """
    failed: set[tuple[int, ...]] = set()
    budget = [max_nodes]
    op_order = rng.sample(_OP_ORDER, len(_OP_ORDER))  # once per sample: reshuffling at every node doubled the time

    def search(values: list[int]) -> list[tuple[int, str, int, int]] | None:
        if len(values) == 2:  # the last step: no recursion, no memo (most of the nodes are here)
            a, b = values
            for op in op_order:
                for x, y in ((a, b), (b, a)) if op in "-/" else ((a, b),):
                    if _INT_OPS[op](x, y) == target:
                        return [(x, op, y, target)]
            return None
        key = tuple(sorted(values))
        if key in failed:
            return None
        budget[0] -= 1
        if budget[0] < 0:
            raise ValueError(f"program:countdown: search budget of {max_nodes} nodes exhausted for {numbers} -> "
                             f"{target}")
        pairs = [(i, j) for i in range(len(values)) for j in range(i + 1, len(values))]
        rng.shuffle(pairs)
        for i, j in pairs:
            rest = [v for k, v in enumerate(values) if k != i and k != j]
            a, b = values[i], values[j]
            for op in op_order:
                for x, y in ((a, b), (b, a)) if op in "-/" else ((a, b),):
                    value = _INT_OPS[op](x, y)
                    if value is None:
                        continue
                    found = search(rest + [value])
                    if found is not None:
                        return [(x, op, y, value)] + found
        failed.add(key)
        return None

    path = search(list(numbers))
    if path is None:
        return None
    pool = [Node(Fraction(n), str(n)) for n in numbers]
    steps = []
    for x, op, y, value in path:
        a = pool.pop(next(k for k, n in enumerate(pool) if n.value == x))
        b = pool.pop(next(k for k, n in enumerate(pool) if n.value == y))
        node = Node(Fraction(value), f"{a.operand()} {op} {b.operand()}", True)
        pool.append(node)
        steps.append((a, op, b, node))
    return steps


def _evaluate(steps, swap: tuple[int, str] | None = None) -> tuple[Fraction | None, str]:
    """Value and expression of the solution tree, with step ``swap[0]`` using operator ``swap[1]`` instead
    (plain arithmetic there: a swapped step may go negative or fractional; None after a division by zero)."""
    built: dict[int, Node] = {}  # id of an original step's node -> the rebuilt node

    for k, (a, op, b, node) in enumerate(steps):
        op = swap[1] if swap and swap[0] == k else op
        x, y = built.get(id(a), a), built.get(id(b), b)
        value = None
        if x.value is not None and y.value is not None and not (op == "/" and y.value == 0):
            value = _ARITH[op](x.value, y.value)
        built[id(node)] = Node(value, f"{x.operand()} {op} {y.operand()}", True)
    last = built[id(steps[-1][3])]
    return last.value, last.expr


def _fmt(v: Fraction) -> str:
    return str(v.numerator) if v.denominator == 1 else f"{v.numerator}/{v.denominator}"


def countdown_problem(example: Example) -> tuple[list[int], int]:
    """Numbers and target: reasoning-gym's metadata when present, else parsed from the question."""
    meta = (example.meta.get("entry") or {}).get("metadata") or {}
    if "numbers" in meta and "target" in meta:
        return [int(n) for n in meta["numbers"]], int(meta["target"])
    found = re.search(r"(?:make|Calculate)\s+(\d+)\s+using all of these numbers:\s*([\d,\s]+)", example.question)
    if not found:
        raise ValueError(f"program:countdown: cannot find the target and numbers in example {example.id}")
    return [int(n) for n in re.findall(r"\d+", found.group(2))], int(found.group(1))


def countdown_trace(example: Example, rng: random.Random, fmt: str = "plain", error_rate: float = 0.0) -> ProgramTrace:
    """The steps of a search solution, then the expression; see the module docstring."""
    numbers, target = countdown_problem(example)
    steps = solve_countdown(numbers, target, rng)
    if steps is None:
        raise ValueError(f"program:countdown: {numbers} cannot make {target} (example {example.id})")
    ops = [op for _, op, _, _ in steps]
    swap = None
    if rng.random() < error_rate:
        # A wrong operator written down while the intended value is carried on: the expression no longer makes
        # the target. Only swaps that really change the final value count.
        choices = [(k, o) for k in range(len(steps)) for o in _OP_ORDER if o != ops[k]]
        rng.shuffle(choices)
        swap = next(((k, o) for k, o in choices if _evaluate(steps, (k, o))[0] != target), None)
        if swap:
            ops[swap[0]] = swap[1]
    _, expression = _evaluate(steps, swap)
    lines = [f"Numbers: {', '.join(map(str, numbers))}. Target: {target}."]
    remaining = [Fraction(n) for n in numbers]
    for k, (a, _, b, node) in enumerate(steps):
        remaining.remove(a.value)
        remaining.remove(b.value)
        remaining.append(node.value)
        left = ", ".join(_fmt(v) for v in remaining)
        lines.append(f"{_fmt(a.value)} {ops[k]} {_fmt(b.value)} = {_fmt(node.value)}."
                     + (f" Left: {left}." if len(remaining) > 1 else f" Reached {target}."))
    return ProgramTrace(finish(lines, expression, fmt, f"The answer is \\boxed{{{expression}}}."), expression,
                        "wrong_operation" if swap else None)


PROGRAMS: dict[str, Callable[..., ProgramTrace]] = {"arithmetic": arithmetic_trace, "countdown": countdown_trace}
