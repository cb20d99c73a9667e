"""What a ``.pt2`` program may contain before torch deserialises it untrusted.

torch evaluates symbolic shape expressions with ``sympy.sympify`` (Python ``eval``) and
torch.fx writes module paths unescaped into generated Python source; these checks accept
what ``torch.export.save`` writes and nothing that could run code or hang (see
:mod:`quantviz.model.pt2`).
"""

from __future__ import annotations

import ast
import json
import math
import operator
import re
from collections.abc import Iterator
from typing import Any

import torch

__all__ = ["ALLOWED_CALLS", "check_expr", "check_strings", "walk_json"]
# sympy constructors and torch.utils._sympy.functions names torch's serializer emits
_EXPR_CALLS = frozenset(
    [
        "Symbol",
        "Integer",
        "Float",
        "Rational",
        "Add",
        "Mul",
        "Pow",
        "Mod",
        "Max",
        "Min",
        "Abs",
        "floor",
        "ceiling",
        "sqrt",
        "Eq",
        "Ne",
        "Lt",
        "Le",
        "Gt",
        "Ge",
        "Equality",
        "Unequality",
        "StrictLessThan",
        "StrictGreaterThan",
        "LessThan",
        "GreaterThan",
        "And",
        "Or",
        "Not",
        "Piecewise",
        "ITE",
        "FloorDiv",
        "ModularIndexing",
        "Where",
        "PythonMod",
        "CleanDiv",
        "CeilToInt",
        "FloorToInt",
        "CeilDiv",
        "LShift",
        "RShift",
        "PowByNatural",
        "FloatPow",
        "FloatTrueDiv",
        "IntTrueDiv",
        "IsNonOverlappingAndDenseIndicator",
        "TruncToFloat",
        "TruncToInt",
        "RoundToInt",
        "RoundDecimal",
        "ToFloat",
        "Identity",
    ]
)
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_EXPR_NODES = (
    ast.Expression,
    ast.Call,
    ast.Name,
    ast.Load,
    ast.Constant,
    ast.keyword,
    ast.BinOp,
    ast.UnaryOp,
    ast.Compare,
    ast.BoolOp,
    ast.operator,
    ast.unaryop,
    ast.cmpop,
    ast.boolop,
    ast.Tuple,
)
_MAX_EXPR = 10_000
_MAX_INT = 1 << 63  # shapes and strides are int64
_MAX_EXPONENT = 16
_POW_CALLS = frozenset({"Pow", "PowByNatural", "FloatPow"})


def _small_exponent(node: ast.expr) -> bool:
    """An exponent sympy cannot blow up with: a symbol or a constant up to 16 in size.

    (``Integer(10) ** Integer(10 ** 9)`` is computed exactly: a hang, not an expression.)
    """
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        node = node.operand
    if isinstance(node, ast.Constant):
        return isinstance(node.value, (int, float)) and abs(node.value) <= _MAX_EXPONENT
    if isinstance(node, ast.Name):
        return True
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and len(node.args) >= 1:
        if node.func.id == "Symbol":
            return True
        if node.func.id in ("Integer", "Float", "Rational") and len(node.args) == 1:
            return _small_exponent(node.args[0])
    return False


def check_expr(expr: str) -> str | None:
    """Why ``expr`` is not a plain symbolic-shape expression (None if it is one).

    Allowed: calls of the names in ``_EXPR_CALLS`` with positional and keyword arguments,
    names, numbers and string constants that are names, arithmetic, comparisons and boolean
    operators. No attributes, subscripts, lambdas or dunder names: nothing ``eval`` could use.
    """
    if len(expr) > _MAX_EXPR:
        return f"expression of {len(expr)} characters"
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return f"not an expression: {expr[:80]!r}"
    for node in ast.walk(tree):
        if not isinstance(node, _EXPR_NODES):
            return f"{type(node).__name__} in {expr[:80]!r}"
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Pow)
            and not _small_exponent(node.right)
        ):
            return f"power with a large or computed exponent in {expr[:80]!r}"
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in _EXPR_CALLS:
                return f"call of {ast.unparse(node.func)[:40]!r} in {expr[:80]!r}"
            if node.func.id in _POW_CALLS and (
                len(node.args) != 2 or not _small_exponent(node.args[1])
            ):
                return f"power with a large or computed exponent in {expr[:80]!r}"
        elif isinstance(node, ast.Name):
            if not _NAME.match(node.id) or "__" in node.id:
                return f"name {node.id!r} in {expr[:80]!r}"
        elif isinstance(node, ast.keyword):
            if node.arg is None or not _NAME.match(node.arg) or "__" in node.arg:
                return f"keyword {node.arg!r} in {expr[:80]!r}"
        elif isinstance(node, ast.Constant):
            v = node.value
            if isinstance(v, str):
                if not _NAME.match(v) or "__" in v:
                    return f"string {v[:40]!r} in {expr[:80]!r}"
            elif isinstance(v, int) and not isinstance(v, bool) and abs(v) >= _MAX_INT:
                return f"integer of {len(str(v))} digits in {expr[:80]!r}"
            elif not (v is None or isinstance(v, (bool, int, float))):
                return f"constant {v!r} in {expr[:80]!r}"
    return None


def walk_json(obj: Any) -> Iterator[tuple[str, Any]]:
    stack = [obj]
    while stack:
        cur = stack.pop()
        if isinstance(cur, dict):
            for k, v in cur.items():
                yield k, v
                stack.append(v)
        elif isinstance(cur, list):
            stack.extend(cur)


_JSON_TEXT_KEYS = frozenset({"in_spec", "out_spec", "custom"})  # JSON inside a string
_UNSAFE_CHARS = re.compile(r'["\\\x00-\x1f\x7f]')
_UNSAFE_TRACE_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def check_strings(obj: Any, where: str = "") -> str | None:
    """Why a string of a serialized program could break out of fx's generated code, or None.

    torch.fx writes module paths into Python source as ``getattr(self, "<part>")`` without
    escaping, and a node's stack trace and annotations into comments. So no string (or key)
    may hold a double quote, a backslash or a control character; stack traces may hold line
    feeds and tabs but no other control character (a carriage return ends a comment); strings
    that are JSON themselves (tree specs, annotations) are parsed and checked inside.
    """
    stack: list[tuple[str, Any]] = [(where, obj)]
    while stack:
        key, cur = stack.pop()
        if isinstance(cur, dict):
            for k, v in cur.items():
                if isinstance(k, str) and _UNSAFE_CHARS.search(k):
                    return f"key {k[:60]!r}"
                stack.append((str(k), v))
        elif isinstance(cur, list):
            stack.extend((key, v) for v in cur)
        elif isinstance(cur, str):
            if key == "stack_trace":
                bad = _UNSAFE_TRACE_CHARS.search(cur)
            elif key in _JSON_TEXT_KEYS:
                try:
                    stack.append((key + "[json]", json.loads(cur)))
                except (ValueError, RecursionError):
                    return f"{key}: not JSON"
                continue
            else:
                bad = _UNSAFE_CHARS.search(cur)
            if bad:
                return f"{key}: {cur[:60]!r} holds {bad.group()!r}"
    return None


ALLOWED_CALLS: frozenset[Any] = frozenset(
    {
        operator.getitem,
        operator.eq,
        operator.ne,
        operator.le,
        operator.ge,
        operator.lt,
        operator.gt,
        operator.neg,
        operator.pos,
        operator.mul,
        operator.add,
        operator.sub,
        operator.floordiv,
        operator.mod,
        operator.pow,
        operator.truediv,
        operator.and_,
        operator.or_,
        operator.not_,
        operator.abs,
        operator.lshift,
        operator.rshift,
        math.trunc,
        math.ceil,
        math.floor,
        round,
        torch.sym_not,
        torch.sym_int,
        torch.sym_float,
        torch.sym_ite,
        torch.sym_max,
        torch.sym_min,
        torch.sym_sqrt,
        torch._assert,
    }
)
