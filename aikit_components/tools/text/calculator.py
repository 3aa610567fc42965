"""A safe calculator: a whitelisted ``ast`` evaluated directly (never ``eval``), with caps on
exponents and integer sizes."""

from __future__ import annotations

import ast
import functools
import math
import operator
from collections.abc import Callable
from typing import Any

from ...errors import InvalidArgument
from ..base import tool
from .common import MAX_EXPONENT, MAX_EXPRESSION, MAX_INT_BITS, check_length


def is_int(value: Any) -> bool:
    """True for an ``int`` that is not a ``bool``."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_bits(bits: int) -> None:
    """Refuse an integer result of ``bits`` bits when it is over ``MAX_INT_BITS``."""
    if bits > MAX_INT_BITS:
        raise InvalidArgument(f"the result would be an integer of about {bits:,} bits, over the {MAX_INT_BITS:,}-bit "
                              "limit; use smaller numbers or floats (e.g. 2.0**1000)")


def check_power(base: Any, exponent: Any) -> None:
    """Refuse an integer power whose exponent or result size is over the limits."""
    if is_int(base) and is_int(exponent) and exponent > 0 and abs(base) > 1:
        if exponent > MAX_EXPONENT and abs(base) > 1:
            raise InvalidArgument(f"exponent {exponent:,} is too large (limit {MAX_EXPONENT:,} for integer powers); "
                                  "use a float base such as 2.0 for an approximate result")
        check_bits(int(math.log2(abs(base)) * exponent) + 1)


def _power(a: Any, b: Any) -> Any:
    check_power(a, b)
    if isinstance(b, float) and abs(b) > MAX_EXPONENT and is_int(a) and abs(a) > 1:
        return float(a) ** b
    result = a ** b
    if isinstance(result, complex):
        raise InvalidArgument("a negative number raised to a fractional power has no real result")
    return result


def _multiply(a: Any, b: Any) -> Any:
    if is_int(a) and is_int(b):
        check_bits(a.bit_length() + b.bit_length())
    return a * b


_BINARY: dict[type, Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: _multiply, ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: _power,
}
_UNARY: dict[type, Callable[[Any], Any]] = {ast.UAdd: operator.pos, ast.USub: operator.neg, ast.Not: operator.not_}
_COMPARE: dict[type, Callable[[Any, Any], bool]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le,
    ast.Gt: operator.gt, ast.GtE: operator.ge,
}
_CONSTANTS: dict[str, float] = {"pi": math.pi, "e": math.e, "tau": math.tau}
_FUNCTIONS: dict[str, Callable[..., Any]] = {
    "sqrt": math.sqrt, "sin": math.sin, "cos": math.cos, "tan": math.tan, "asin": math.asin, "acos": math.acos,
    "atan": math.atan, "atan2": math.atan2, "log": math.log, "log10": math.log10, "log2": math.log2,
    "exp": math.exp, "abs": abs, "round": round, "min": min, "max": max, "floor": math.floor, "ceil": math.ceil,
    "trunc": math.trunc, "hypot": math.hypot, "degrees": math.degrees, "radians": math.radians,
}
_OPERATOR_SYMBOLS = {ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.LShift: "<<", ast.RShift: ">>",
                     ast.MatMult: "@", ast.Invert: "~", ast.Is: "is", ast.IsNot: "is not", ast.In: "in",
                     ast.NotIn: "not in"}


def _symbol(op: ast.AST) -> str:
    return _OPERATOR_SYMBOLS.get(type(op), type(op).__name__)


def _refuse(node: ast.AST, expression: str, what: str) -> InvalidArgument:
    col = getattr(node, "col_offset", None)
    where = f" at position {col}" if col is not None else ""
    return InvalidArgument(
        f"{what}{where} is not allowed in a calculation; use numbers, + - * / // % **, comparisons, parentheses, "
        f"the constants {', '.join(_CONSTANTS)} and the functions {', '.join(_FUNCTIONS)}",
        details={"expression": expression, "position": col},
    )


def _evaluate(node: ast.AST, expression: str) -> Any:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body, expression)
    if isinstance(node, ast.Constant):
        if is_int(node.value) or isinstance(node.value, float):
            return node.value
        raise _refuse(node, expression, f"the literal {node.value!r}")
    if isinstance(node, ast.Name):
        if node.id in _CONSTANTS:
            return _CONSTANTS[node.id]
        if node.id in _FUNCTIONS:
            raise _refuse(node, expression, f"{node.id!r} without parentheses")
        raise _refuse(node, expression, f"the name {node.id!r}")
    if isinstance(node, ast.BinOp):
        op = _BINARY.get(type(node.op))
        if op is None:
            raise _refuse(node, expression, f"the operator {_symbol(node.op)!r}")
        return op(_evaluate(node.left, expression), _evaluate(node.right, expression))
    if isinstance(node, ast.UnaryOp):
        uop = _UNARY.get(type(node.op))
        if uop is None:
            raise _refuse(node, expression, f"the operator {_symbol(node.op)!r}")
        return uop(_evaluate(node.operand, expression))
    if isinstance(node, ast.BoolOp):
        values = [_evaluate(v, expression) for v in node.values]
        return all(values) if isinstance(node.op, ast.And) else any(values)
    if isinstance(node, ast.Compare):
        left = _evaluate(node.left, expression)
        for op_node, right_node in zip(node.ops, node.comparators):
            cmp = _COMPARE.get(type(op_node))
            if cmp is None:
                raise _refuse(node, expression, f"the comparison {_OPERATOR_SYMBOLS.get(type(op_node), '?')!r}")
            right = _evaluate(right_node, expression)
            if not cmp(left, right):
                return False
            left = right
        return True
    if isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else ast.unparse(node.func)
            raise _refuse(node, expression, f"calling {name!r}")
        if node.keywords or any(isinstance(a, ast.Starred) for a in node.args):
            raise _refuse(node, expression, "keyword or * arguments")
        args = [_evaluate(a, expression) for a in node.args]
        if node.func.id == "round" and len(args) == 2 and is_int(args[1]) and abs(args[1]) > 1000:
            raise InvalidArgument("round() takes at most 1000 digits")
        return _FUNCTIONS[node.func.id](*args)
    if isinstance(node, ast.Attribute):
        raise _refuse(node, expression, f"the attribute access .{node.attr}")
    if isinstance(node, ast.Subscript):
        raise _refuse(node, expression, "indexing")
    raise _refuse(node, expression, f"a {type(node).__name__} expression")


@functools.lru_cache(maxsize=1024)
def _parse_expression(expression: str) -> ast.Expression:
    return ast.parse(expression, mode="eval")  # the tree is only read, so sharing it is safe


@tool(category="text", security="safe", examples=[
    {"args": {"expression": "(2 + 3) * 4 ** 2 / 8"}, "result": 10.0},
    {"args": {"expression": "round(sqrt(2) * 100) / 100 + max(1, 7) // 2"}, "result": 4.41},
    {"args": {"expression": "2**10 >= 1000"}, "result": True},
])
def calculate(expression: str) -> Any:
    """Evaluate an arithmetic expression safely (no code execution).

    Allowed: numbers, + - * / // % ** (integer exponents up to 10000), unary - + not, parentheses,
    comparisons (== != < <= > >=), and/or, the constants pi, e, tau and the functions sqrt, sin, cos,
    tan, asin, acos, atan, atan2, log (log(x, base)), log10, log2, exp, abs, round, min, max, floor,
    ceil, trunc, hypot, degrees, radians.

    Args:
        expression: The expression, e.g. "sqrt(2) * (3 + 4) ** 2".

    Returns:
        The number (integer or float), or a boolean for comparisons.
    """
    check_length(expression, MAX_EXPRESSION, "expression")
    if "\x00" in expression:
        raise InvalidArgument("the expression contains a NUL character")
    try:
        tree = _parse_expression(expression.strip())
    except SyntaxError as exc:
        pos = (exc.offset or 1) - 1
        if "digits" in exc.msg:
            raise InvalidArgument("a number in the expression has more than 4300 digits; use a float such as 1e300 "
                                  "or fewer digits", details={"reason": "too many digits"}) from None
        raise InvalidArgument(f"cannot parse the expression at position {pos}: {exc.msg}\n    {expression.strip()}\n"
                              f"    {' ' * pos}^", details={"position": pos, "reason": exc.msg}) from None
    except (RecursionError, MemoryError, ValueError):
        raise InvalidArgument("the expression is too deeply nested or too large; simplify it") from None
    try:
        result = _evaluate(tree, expression)
    except ZeroDivisionError:
        raise InvalidArgument("division by zero in the expression") from None
    except OverflowError:
        raise InvalidArgument("the result is too large for a floating-point number") from None
    except ValueError as exc:
        raise InvalidArgument(f"math error: {exc} (for example sqrt or log of a negative number)") from None
    except TypeError as exc:
        raise InvalidArgument(f"wrong arguments: {exc}") from None
    except RecursionError:
        raise InvalidArgument("the expression is too deeply nested; simplify it") from None
    if isinstance(result, float) and not math.isfinite(result):
        raise InvalidArgument("the result is not a finite number (infinity or NaN)")
    return result
