"""Safe evaluation of an analysis metric's ``successCondition`` / ``failureCondition`` over ``result``.

Called by ``activities.analysis.measure_metric`` (every measurement) and by release validation
(``releases.loader.parse_spec`` → ``check_templates``: an expression that is not allowed is refused, exit 2, before
anything happens). Never ``eval``: the text is parsed with ``ast`` and a whitelist of node types is walked by a
small interpreter.

The language is the common subset of Argo's expr conditions and Python expressions:
``result`` (a number, or a list of numbers for a Prometheus vector, or the JSON value of a web metric), numbers,
strings, ``true``/``false``/``nil``, list literals, indexing (``result[0]``, ``result["ok"]``), comparisons
(``== != < <= > >= in``, chained), ``and``/``or``/``not`` (also ``&&``/``||``/``!``), ``+ - * / % **`` on numbers
and the functions ``len``, ``isNaN``, ``isInf``, ``abs``, ``min``, ``max``. Anything else (attribute access,
other calls, names, dunders, comprehensions, lambdas) is refused, and so are results that would be huge
(``9 ** 9 ** 9``).
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable
from typing import Any

MAX_LENGTH = 1000
MAX_NODES = 200
MAX_INT_BITS = 4096  # bounds ``**`` and ``*`` on integers: 2**4096 is already absurd for a metric
MAX_STRING = 10000


class ConditionError(ValueError):
    """The expression is not allowed (validation) or cannot be evaluated on this result (a measurement Error)."""


def _is_nan(x: Any) -> bool:
    return isinstance(x, float) and math.isnan(x)


def _is_inf(x: Any) -> bool:
    return isinstance(x, float) and math.isinf(x)


def _seq_or_args(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def call(*args: Any) -> Any:
        items = args[0] if len(args) == 1 and isinstance(args[0], list) else list(args)
        if not items:
            raise ConditionError(f"{name}() of an empty list")
        if not all(_number(x) for x in items):
            raise ConditionError(f"{name}() takes numbers")
        return fn(items)

    return call


def _abs(x: Any) -> Any:
    if not _number(x):
        raise ConditionError("abs() takes a number")
    return abs(x)


def _len(x: Any) -> int:
    if not isinstance(x, list | str | dict):
        raise ConditionError(f"len() of {_kind(x)}")
    return len(x)


FUNCTIONS: dict[str, tuple[Callable[..., Any], int, int]] = {  # name: (function, min args, max args)
    "len": (_len, 1, 1),
    "isNaN": (_is_nan, 1, 1),
    "isInf": (_is_inf, 1, 1),
    "abs": (_abs, 1, 1),
    "min": (_seq_or_args("min", min), 1, 20),
    "max": (_seq_or_args("max", max), 1, 20),
}
CONSTANTS = {"true": True, "false": False, "nil": None, "True": True, "False": False, "None": None,
             "NaN": math.nan, "Inf": math.inf}
_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], Any]] = {
    ast.Eq: operator.eq, ast.NotEq: operator.ne, ast.Lt: operator.lt, ast.LtE: operator.le, ast.Gt: operator.gt,
    ast.GtE: operator.ge, ast.In: lambda a, b: a in b, ast.NotIn: lambda a, b: a not in b,
}
_ARITH: dict[type[ast.operator], Callable[[Any, Any], Any]] = {
    ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
    ast.Mod: operator.mod, ast.Pow: operator.pow, ast.FloorDiv: operator.floordiv,
}


def _number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _kind(x: Any) -> str:
    return {list: "a list", dict: "an object", str: "a string", bool: "a boolean", type(None): "nil"}.get(
        type(x), "a number")


def _translate(expr: str) -> str:
    """Argo/expr spellings to Python's, outside string literals: && → and, || → or, ! → not (but not !=)."""
    out, i, quote = [], 0, ""
    while i < len(expr):
        c = expr[i]
        if quote:
            out.append(c)
            if c == "\\" and i + 1 < len(expr):
                out.append(expr[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'":
            quote = c
            out.append(c)
        elif expr.startswith("&&", i):
            out.append(" and ")
            i += 1
        elif expr.startswith("||", i):
            out.append(" or ")
            i += 1
        elif c == "!" and not expr.startswith("!=", i):
            out.append(" not ")
        else:
            out.append(c)
        i += 1
    return "".join(out)


def parse(expr: str) -> ast.expr:
    """The checked syntax tree of a condition; ConditionError saying what is not allowed."""
    if not isinstance(expr, str) or not expr.strip():
        raise ConditionError("empty condition")
    if len(expr) > MAX_LENGTH:
        raise ConditionError(f"longer than {MAX_LENGTH} characters")
    if "{{" in expr:
        raise ConditionError("conditions are not templated: write the value, {{args.x}} is only replaced in queries")
    if "__" in expr:
        raise ConditionError("'__' is not allowed")
    try:
        tree = ast.parse(_translate(expr).strip(), mode="eval")
    except SyntaxError as e:
        raise ConditionError(f"syntax error: {e.msg} (column {e.offset})") from None
    except (RecursionError, MemoryError, ValueError) as e:
        raise ConditionError(f"cannot parse: {type(e).__name__}") from None
    nodes = list(ast.walk(tree))
    if len(nodes) > MAX_NODES:
        raise ConditionError(f"too complex ({len(nodes)} syntax nodes, at most {MAX_NODES})")
    called = {id(n.func) for n in nodes if isinstance(n, ast.Call)}
    for node in nodes:
        _check_node(node)
        if isinstance(node, ast.Name) and node.id in FUNCTIONS and id(node) not in called:
            raise ConditionError(f"{node.id} is a function: call it, e.g. {node.id}(result)")
    return tree.body


_ALLOWED = (ast.Expression, ast.BoolOp, ast.UnaryOp, ast.BinOp, ast.Compare, ast.Subscript, ast.Name, ast.Constant,
            ast.Call, ast.List, ast.Tuple, ast.Load, ast.And, ast.Or, ast.Not, ast.USub, ast.UAdd,
            *_COMPARE, *_ARITH)


def _check_node(node: ast.AST) -> None:
    if not isinstance(node, _ALLOWED):
        what = {ast.Attribute: "attribute access", ast.Lambda: "lambda", ast.IfExp: "if-else",
                ast.ListComp: "comprehension", ast.GeneratorExp: "comprehension", ast.Dict: "object literal",
                ast.NamedExpr: "assignment", ast.Starred: "*", ast.Slice: "slicing", ast.JoinedStr: "f-string",
                ast.BitAnd: "&", ast.BitOr: "|", ast.BitXor: "^", ast.Invert: "~", ast.LShift: "<<",
                ast.RShift: ">>", ast.MatMult: "@"}.get(type(node), type(node).__name__)
        raise ConditionError(f"{what} is not allowed")
    if isinstance(node, ast.Name) and node.id != "result" and node.id not in CONSTANTS:
        if node.id in FUNCTIONS:
            return  # checked at its Call
        raise ConditionError(f"unknown name {node.id!r} (only result, true, false, nil)")
    if isinstance(node, ast.Call):
        if isinstance(node.func, ast.Attribute):
            raise ConditionError("attribute access is not allowed (calling a method)")
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            name = node.func.id if isinstance(node.func, ast.Name) else "an expression"
            raise ConditionError(f"calling {name} is not allowed (functions: {', '.join(FUNCTIONS)})")
        _, lo, hi = FUNCTIONS[node.func.id]
        if node.keywords or not lo <= len(node.args) <= hi:
            raise ConditionError(f"{node.func.id}() takes {lo}{'' if lo == hi else f' to {hi}'} argument(s)")
    if isinstance(node, ast.Constant):
        if not isinstance(node.value, int | float | str | bool | type(None)) or isinstance(node.value, complex):
            raise ConditionError(f"constant {node.value!r} is not allowed")
        if isinstance(node.value, str) and len(node.value) > MAX_STRING:
            raise ConditionError("string constant too long")
        if isinstance(node.value, int) and node.value.bit_length() > MAX_INT_BITS:
            raise ConditionError("integer constant too large")


def check(expr: str) -> None:
    """Raises ConditionError when ``expr`` is not an allowed condition (release validation)."""
    parse(expr)


def evaluate(expr: str, result: Any) -> bool:
    """The condition's truth for ``result``; ConditionError on a bad expression or a failing evaluation
    (index out of range, a type mismatch: the measurement is then an Error, as in Argo)."""
    tree = parse(expr)
    value = _Eval(result).eval(tree)
    if not isinstance(value, bool):
        raise ConditionError(f"the condition gives {_kind(value)} ({_short(value)}), not true or false")
    return value


def _short(x: Any) -> str:
    s = repr(x)
    return s if len(s) <= 60 else s[:57] + "..."


class _Eval:
    def __init__(self, result: Any) -> None:
        self.result = result

    def eval(self, node: ast.AST) -> Any:  # noqa: C901 - one branch per allowed node type
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, ast.Name):
            if node.id == "result":
                return self.result
            if node.id in CONSTANTS:
                return CONSTANTS[node.id]
            raise ConditionError(f"{node.id} is a function")
        if isinstance(node, ast.List | ast.Tuple):
            return [self.eval(e) for e in node.elts]
        if isinstance(node, ast.BoolOp):
            # Short-circuit like expr and Python: `len(result) > 0 and result[0] < 1` is safe on an empty result.
            value: Any = None
            for v in node.values:
                value = self._bool(self.eval(v), "and" if isinstance(node.op, ast.And) else "or")
                if isinstance(node.op, ast.And) and not value:
                    return False
                if isinstance(node.op, ast.Or) and value:
                    return True
            return value
        if isinstance(node, ast.UnaryOp):
            v = self.eval(node.operand)
            if isinstance(node.op, ast.Not):
                return not self._bool(v, "not")
            if not _number(v):
                raise ConditionError(f"unary minus/plus on {_kind(v)}")
            return -v if isinstance(node.op, ast.USub) else +v
        if isinstance(node, ast.BinOp):
            return self._arith(node.op, self.eval(node.left), self.eval(node.right))
        if isinstance(node, ast.Compare):
            left = self.eval(node.left)
            for op, comp in zip(node.ops, node.comparators, strict=True):
                right = self.eval(comp)
                try:
                    ok = _COMPARE[type(op)](left, right)
                except TypeError:
                    raise ConditionError(f"cannot compare {_kind(left)} ({_short(left)}) with {_kind(right)} "
                                         f"({_short(right)})") from None
                if not ok:
                    return False
                left = right
            return True
        if isinstance(node, ast.Subscript):
            return self._index(self.eval(node.value), self.eval(node.slice), node)
        if isinstance(node, ast.Call):
            assert isinstance(node.func, ast.Name)
            fn = FUNCTIONS[node.func.id][0]
            try:
                return fn(*[self.eval(a) for a in node.args])
            except (TypeError, ValueError) as e:
                raise ConditionError(f"{node.func.id}(): {e}") from None
        raise ConditionError(f"{type(node).__name__} is not allowed")

    @staticmethod
    def _bool(v: Any, op: str) -> bool:
        if not isinstance(v, bool):
            raise ConditionError(f"'{op}' needs true/false, got {_kind(v)} ({_short(v)})")
        return v

    @staticmethod
    def _index(seq: Any, key: Any, node: ast.Subscript) -> Any:
        where = ast.unparse(node)
        if isinstance(seq, list):
            if not isinstance(key, int) or isinstance(key, bool):
                raise ConditionError(f"{where}: a list index must be an integer")
            if not -len(seq) <= key < len(seq):
                raise ConditionError(f"{where}: index out of range (the result has {len(seq)} value"
                                     f"{'' if len(seq) == 1 else 's'})")
            return seq[key]
        if isinstance(seq, dict):
            if not isinstance(key, str):
                raise ConditionError(f"{where}: an object key must be a string")
            if key not in seq:
                raise ConditionError(f"{where}: no key {key!r}")
            return seq[key]
        raise ConditionError(f"{where}: cannot index {_kind(seq)} ({_short(seq)})")

    @staticmethod
    def _arith(op: ast.operator, a: Any, b: Any) -> Any:
        if not (_number(a) and _number(b)):
            if isinstance(op, ast.Add) and isinstance(a, str) and isinstance(b, str) \
                    and len(a) + len(b) <= MAX_STRING:
                return a + b
            raise ConditionError(f"arithmetic on {_kind(a)} and {_kind(b)}")
        if isinstance(op, ast.Pow):
            if isinstance(a, int) and isinstance(b, int):
                if b < 0:
                    a = float(a)
                elif b > 0 and max(a.bit_length(), 1) * b > MAX_INT_BITS:
                    raise ConditionError(f"{a} ** {b} is too large")
            elif abs(b) > 10000:
                raise ConditionError(f"exponent {b} is too large")
        try:
            r = _ARITH[type(op)](a, b)
        except ZeroDivisionError:
            # Argo's expr gives +Inf/NaN for float division by zero; a condition on it is then simply false.
            return math.nan if a == 0 or _is_nan(a) else math.copysign(math.inf, a)
        except OverflowError:
            raise ConditionError("numeric overflow") from None
        if isinstance(r, int) and r.bit_length() > MAX_INT_BITS:
            raise ConditionError("integer result too large")
        return r


def phase_of(success: str | None, failure: str | None, result: Any) -> str:
    """Argo's EvaluateResult: ``Successful``, ``Failed`` or ``Inconclusive`` for a result.

    No condition: Successful. Only a success condition: Failed when it is false. Only a failure condition:
    Successful when it is false. Both: Failed if the failure condition holds (even if the success one does too),
    Successful if only the success condition holds, Inconclusive if neither."""
    if not success and not failure:
        return "Successful"
    ok = evaluate(success, result) if success else None
    bad = evaluate(failure, result) if failure else None
    if bad is None:
        bad = not ok
    if ok is None:
        ok = not bad
    if bad:
        return "Failed"
    return "Successful" if ok else "Inconclusive"
