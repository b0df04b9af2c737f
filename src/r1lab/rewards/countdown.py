"""The Countdown check (TinyZero, the R1-Zero replication on Countdown): an arithmetic expression that uses each
given number exactly once and equals the target.

The expression is parsed with ``ast`` and evaluated on exact fractions; only numbers, + - * /, unary minus and
parentheses are accepted, so nothing of the model's text is ever executed.
"""

from __future__ import annotations

import ast
from fractions import Fraction

_OPS = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b, ast.Mult: lambda a, b: a * b,
        ast.Div: lambda a, b: a / b}


class _NotArithmetic(ValueError):
    pass


def _evaluate(node: ast.AST, used: list[Fraction]) -> Fraction:
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        used.append(Fraction(str(node.value)))
        return used[-1]
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        return -_evaluate(node.operand, used)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left, used), _evaluate(node.right, used)
        if isinstance(node.op, ast.Div) and right == 0:
            raise _NotArithmetic("division by zero")
        return _OPS[type(node.op)](left, right)
    raise _NotArithmetic(f"not allowed in a Countdown expression: {ast.dump(node)[:60]}")


def countdown_score(expression: str, numbers: list, target) -> float:
    """1.0 when ``expression`` uses exactly the multiset ``numbers`` and equals ``target``, else 0.0. In an equation
    (``44 + 19 - 35 = 28``) either side may be the expression; text that is not arithmetic scores 0."""
    if len(expression) > 1000:  # a Countdown answer is short; a long text is not one
        return 0.0
    text = expression.replace("\\times", "*").replace("×", "*").replace("÷", "/")
    wanted, goal = sorted(Fraction(str(n)) for n in numbers), Fraction(str(target))
    return max(_side_score(side.strip(), wanted, goal) for side in text.split("="))


def _side_score(text: str, wanted: list[Fraction], goal: Fraction) -> float:
    try:
        used: list[Fraction] = []
        value = _evaluate(ast.parse(text, mode="eval").body, used)
    except (SyntaxError, _NotArithmetic, ValueError, RecursionError):
        return 0.0
    return float(sorted(used) == wanted and value == goal)
