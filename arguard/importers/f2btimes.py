"""fail2ban's durations (`bantime = 1h 30m`) and its ban-time increment
(`bantime.increment`, `.factor`, `.formula`, `.multipliers`, `.maxtime`) as the ban times of
successive offences.

`bantime.formula` is a Python expression in fail2ban; here it is evaluated by a small
arithmetic evaluator (numbers, `ban.Time`, `ban.Count`, `banFactor`, + - * / // % ** <<
>>, comparisons, `x if c else y`, `min`, `max`, `abs`, `math.exp`, `math.log`,
`math.sqrt`, `math.pow`), never with eval.
"""

from __future__ import annotations

import ast
import math
import operator
import re

_UNITS = (
    (re.compile(r"(?i)^(?:years?|yea?|yy?)$"), (365 * 3 + 366) * 86_400 / 4),
    (re.compile(r"(?i)^(?:months?|mon?)$"), (365 * 3 + 366) * 86_400 / 4 / 12),
    (re.compile(r"(?i)^(?:weeks?|wee?|ww?)$"), 7 * 86_400),
    (re.compile(r"(?i)^(?:days?|da|dd?)$"), 86_400),
    (re.compile(r"(?i)^(?:hours?|hou?|hh?)$"), 3600),
    (re.compile(r"(?i)^(?:minutes?|min?|mm?)$"), 60),
    (re.compile(r"(?i)^(?:seconds?|sec?|ss?)$"), 1),
)
_TERM = re.compile(r"\s*([+-])?\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)")
DEFAULT_FORMULA = "ban.Time * (1<<(ban.Count if ban.Count<20 else 20)) * banFactor"
MAX_STEPS = 20


def seconds(text: str) -> int:
    """fail2ban durations: `600`, `10m`, `1h`, `2d`, `1w`, `1mo`, `1y`, sums and differences
    like `1h 30m`, `1d12h`, `1year-6mo`; `-1` (permanent) stays -1."""
    source = text.strip()
    position, total, found = 0, 0.0, False
    while position < len(source):
        match = _TERM.match(source, position)
        if match is None or match.end() == position:
            raise ValueError(f"not a duration: {text!r}")
        sign, number, unit = match.groups()
        factor = 1.0
        if unit:
            factor = next((f for pattern, f in _UNITS if pattern.match(unit)), None)
            if factor is None:
                raise ValueError(f"not a duration: {text!r} (unknown unit {unit!r})")
        total += (-1 if sign == "-" else 1) * float(number) * factor
        position, found = match.end(), True
    if not found:
        raise ValueError(f"not a duration: {text!r}")
    return int(round(total))


class FormulaError(ValueError):
    pass


_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul,
           ast.Div: operator.truediv, ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod,
           ast.Pow: operator.pow, ast.LShift: operator.lshift, ast.RShift: operator.rshift}
_COMPARE = {ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
            ast.GtE: operator.ge, ast.Eq: operator.eq, ast.NotEq: operator.ne}
_FUNCTIONS = {"min": min, "max": max, "abs": abs, "math.exp": math.exp, "math.log": math.log,
              "math.sqrt": math.sqrt, "math.pow": math.pow, "float": float, "int": int}


def evaluate(formula: str, time: float, count: int, factor: float) -> float:
    """The value of a bantime.formula for a ban of `time` seconds after `count` bans."""
    names = {"ban.Time": time, "ban.Count": count, "banFactor": factor}
    try:
        tree = ast.parse(formula.strip(), mode="eval")
    except SyntaxError as error:
        raise FormulaError(f"bantime.formula is not an expression: {error.msg}") from None

    def value(node: ast.AST) -> float:
        if isinstance(node, ast.Expression):
            return value(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, (int, float)):
            return node.value
        if isinstance(node, (ast.Name, ast.Attribute)):
            name = _dotted(node)
            if name in names:
                return names[name]
            raise FormulaError(f"bantime.formula: unknown name {name!r}")
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            operand = value(node.operand)
            return -operand if isinstance(node.op, ast.USub) else operand
        if isinstance(node, ast.IfExp):
            return value(node.body) if value(node.test) else value(node.orelse)
        if isinstance(node, ast.Compare) and len(node.ops) == 1 and type(node.ops[0]) in _COMPARE:
            return _COMPARE[type(node.ops[0])](value(node.left), value(node.comparators[0]))
        if isinstance(node, ast.Call) and not node.keywords:
            name = _dotted(node.func)
            if name in _FUNCTIONS:
                return _FUNCTIONS[name](*(value(a) for a in node.args))
            raise FormulaError(f"bantime.formula: unknown function {name!r}")
        raise FormulaError(f"bantime.formula: {ast.dump(node)[:40]} is not supported")

    try:
        return float(value(tree))
    except (ArithmeticError, TypeError) as error:
        raise FormulaError(f"bantime.formula: {error}") from None


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def offence_times(bantime: int, factor: float, formula: str | None,
                  multipliers: list[int], maxtime: int | None) -> list[int]:
    """Ban seconds of the 2nd, 3rd, … offence (fail2ban's increment; the 1st is `bantime`),
    until the value stops growing or MAX_STEPS are listed."""
    times: list[int] = []
    for count in range(1, MAX_STEPS + 1):
        if multipliers:
            value = bantime * factor * multipliers[min(count, len(multipliers) - 1)]
        else:
            value = max(bantime, evaluate(formula or DEFAULT_FORMULA, bantime, count, factor))
        if maxtime is not None:
            value = min(value, maxtime)
        value = int(math.ceil(value))
        if times and value == times[-1]:
            break
        times.append(value)
        if multipliers and count >= len(multipliers) - 1:
            break
    return times
