"""The AWS IoT SQL subset the sandbox's rules engine runs (SQL version 2016-03-23).

Hand-written (the emulator side; no library implements AWS IoT SQL):
``SELECT <* | expr [AS name], ...> FROM '<topic filter>' [WHERE <expr>]`` with JSON paths
(``state.reported.temp``), numbers, 'strings', true/false/null, ``+ - * / %``,
``= <> != < <= > >=``, ``AND OR NOT``, parentheses, and the functions ``topic()``/``topic(n)``,
``timestamp()``, ``clientid()``, ``newuuid()``, ``abs()``, ``round()``, ``lower()``, ``upper()``.
An expression over a missing field is *Undefined*: it is left out of the result, and a WHERE
that is Undefined does not match (AWS's rules). Syntax errors raise :class:`SqlError`
(the API answers ``SqlParseException``). ``clientid()`` is Undefined for messages that reach
the sandbox through the broker (mosquitto does not tell which client published); it is known
for iot-data Publish (the caller's access key is not a client id: Undefined there too).
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any


class SqlError(ValueError):
    pass


class _Undefined:
    def __repr__(self) -> str:
        return "Undefined"


UNDEFINED = _Undefined()
FUNCTIONS = {"topic", "timestamp", "clientid", "newuuid", "abs", "round", "lower", "upper"}

_TOKEN = re.compile(r"""\s*(?:
    (?P<num>\d+\.\d*|\.\d+|\d+)(?![A-Za-z_])
  | (?P<str>'(?:[^'\\]|\\.)*')
  | (?P<op><>|!=|<=|>=|[-+*/%=<>(),.])
  | (?P<name>[A-Za-z_$][A-Za-z0-9_$]*)
)""", re.X)
_KEYWORDS = {"SELECT", "FROM", "WHERE", "AS", "AND", "OR", "NOT", "TRUE", "FALSE", "NULL"}


@dataclass
class Statement:
    items: list            # [("*", None)] or [(expr, alias)]
    topic_filter: str
    where: Any = None
    sql: str = ""
    aliases: list = field(default_factory=list)


@dataclass
class Context:
    """What a message brings to the SQL: topic (without a Basic Ingest prefix), payload, client."""

    topic: str
    payload: bytes
    client_id: str | None = None
    timestamp_ms: int = 0
    doc: Any = None

    def __post_init__(self) -> None:
        try:
            self.doc = json.loads(self.payload) if self.payload else UNDEFINED
        except (ValueError, UnicodeDecodeError):
            self.doc = UNDEFINED


def _tokenize(sql: str) -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    pos = 0
    while pos < len(sql):
        if sql[pos:].strip() == "":
            break
        m = _TOKEN.match(sql, pos)
        if not m or m.end() == pos:
            raise SqlError(f"Syntax error at position {pos}: unexpected {sql[pos:pos + 12]!r}")
        pos = m.end()
        if m.group("num"):
            text = m.group("num")
            out.append(("num", float(text) if "." in text else int(text)))
        elif m.group("str"):
            out.append(("str", re.sub(r"\\(.)", r"\1", m.group("str")[1:-1])))
        elif m.group("op"):
            out.append(("op", m.group("op")))
        else:
            word = m.group("name")
            out.append(("kw", word.upper()) if word.upper() in _KEYWORDS else ("name", word))
    return out


class _Parser:
    def __init__(self, sql: str) -> None:
        self.toks = _tokenize(sql)
        self.i = 0

    def peek(self, kind=None, value=None):
        tok = self.toks[self.i] if self.i < len(self.toks) else (None, None)
        if kind and tok[0] != kind:
            return None
        if value is not None and tok[1] != value:
            return None
        return tok

    def take(self, kind=None, value=None, what: str = ""):
        tok = self.peek(kind, value)
        if tok is None or tok[0] is None:
            got = self.toks[self.i][1] if self.i < len(self.toks) else "the end of the statement"
            raise SqlError(f"Syntax error: expected {what or value or kind} but found {got!r}")
        self.i += 1
        return tok

    def statement(self) -> Statement:
        self.take("kw", "SELECT")
        items = []
        while True:
            if self.peek("op", "*"):
                self.take()
                items.append(("*", None))
            else:
                expr = self.expr()
                alias = None
                if self.peek("kw", "AS"):
                    self.take()
                    alias = self.take("name", what="a name after AS")[1]
                elif expr[0] == "path":
                    alias = expr[1][-1]
                elif expr[0] == "call":
                    alias = expr[1]
                else:
                    raise SqlError("Syntax error: an expression in SELECT needs a name (expr AS name)")
                items.append((expr, alias))
            if not self.peek("op", ","):
                break
            self.take()
        self.take("kw", "FROM", what="FROM")
        topic = self.take("str", what="a quoted topic filter after FROM")[1]
        check_filter(topic)
        where = None
        if self.peek("kw", "WHERE"):
            self.take()
            where = self.expr()
        if self.i != len(self.toks):
            raise SqlError(f"Syntax error: unexpected {self.toks[self.i][1]!r} after the statement")
        return Statement(items, topic, where)

    def expr(self):
        return self.or_()

    def _left_assoc(self, operand, kind: str, ops: tuple[str, ...], node_of):
        """``operand (op operand)*`` grouped from the left: ``node_of(op, left, right)`` per op."""
        node = operand()
        while (tok := self.peek(kind)) and tok[1] in ops:
            self.take()
            node = node_of(tok[1], node, operand())
        return node

    def or_(self):
        return self._left_assoc(self.and_, "kw", ("OR",), lambda _op, a, b: ("or", a, b))

    def and_(self):
        return self._left_assoc(self.not_, "kw", ("AND",), lambda _op, a, b: ("and", a, b))

    def not_(self):
        if self.peek("kw", "NOT"):
            self.take()
            return ("not", self.not_())
        return self.cmp()

    def cmp(self):
        node = self.add()
        tok = self.peek("op")
        if tok and tok[1] in ("=", "<>", "!=", "<", "<=", ">", ">="):
            self.take()
            node = ("cmp", tok[1], node, self.add())
        return node

    def add(self):
        return self._left_assoc(self.mul, "op", ("+", "-"), lambda op, a, b: ("arith", op, a, b))

    def mul(self):
        return self._left_assoc(self.unary, "op", ("*", "/", "%"), lambda op, a, b: ("arith", op, a, b))

    def unary(self):
        if self.peek("op", "-"):
            self.take()
            return ("neg", self.unary())
        return self.primary()

    def primary(self):
        tok = self.peek()
        kind, value = tok
        if kind == "num" or kind == "str":
            self.take()
            return ("lit", value)
        if kind == "kw" and value in ("TRUE", "FALSE", "NULL"):
            self.take()
            return ("lit", {"TRUE": True, "FALSE": False, "NULL": None}[value])
        if kind == "op" and value == "(":
            self.take()
            node = self.expr()
            self.take("op", ")", what="')'")
            return node
        if kind == "name":
            self.take()
            if self.peek("op", "("):
                if value.lower() not in FUNCTIONS:
                    raise SqlError(f"the function {value}() is not supported by the sandbox's rules engine")
                self.take()
                args = []
                if not self.peek("op", ")"):
                    args.append(self.expr())
                    while self.peek("op", ","):
                        self.take()
                        args.append(self.expr())
                self.take("op", ")", what="')'")
                return ("call", value.lower(), args)
            path = [value]
            while self.peek("op", "."):
                self.take()
                path.append(self.take("name", what="a field name after '.'")[1])
            return ("path", path)
        raise SqlError(f"Syntax error: unexpected {value!r}" if kind else "Syntax error: the statement ends too early")


def check_filter(topic_filter: str) -> None:
    if not topic_filter:
        raise SqlError("the FROM topic filter is empty")
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+"):
            raise SqlError(f"invalid topic filter {topic_filter!r}")


def parse(sql: str) -> Statement:
    """Parse a rule's SQL. Raises :class:`SqlError`."""
    if not isinstance(sql, str) or not sql.strip():
        raise SqlError("the SQL statement is empty")
    st = _Parser(sql).statement()
    st.sql = sql
    return st


# -- evaluation -----------------------------------------------------------------------
def _num(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def evaluate(node, ctx: Context):
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "path":
        cur = ctx.doc
        for part in node[1]:
            if not isinstance(cur, dict) or part not in cur:
                return UNDEFINED
            cur = cur[part]
        return cur
    if kind == "call":
        return _call(node[1], [evaluate(a, ctx) for a in node[2]], ctx)
    if kind == "neg":
        v = evaluate(node[1], ctx)
        return -v if _num(v) else UNDEFINED
    if kind == "arith":
        a, b = evaluate(node[2], ctx), evaluate(node[3], ctx)
        if node[1] == "+" and isinstance(a, str) and isinstance(b, str):
            return a + b
        if not (_num(a) and _num(b)):
            return UNDEFINED
        op = node[1]
        if op in ("/", "%") and b == 0:
            return UNDEFINED
        return {"+": lambda: a + b, "-": lambda: a - b, "*": lambda: a * b, "/": lambda: a / b,
                "%": lambda: a % b}[op]()
    if kind == "cmp":
        a, b = evaluate(node[2], ctx), evaluate(node[3], ctx)
        if a is UNDEFINED or b is UNDEFINED:
            return UNDEFINED
        op = node[1]
        if op == "=":
            return a == b
        if op in ("<>", "!="):
            return a != b
        if not ((_num(a) and _num(b)) or (isinstance(a, str) and isinstance(b, str))):
            return UNDEFINED
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    if kind == "not":
        v = evaluate(node[1], ctx)
        return (not v) if isinstance(v, bool) else UNDEFINED
    if kind in ("and", "or"):
        a, b = evaluate(node[1], ctx), evaluate(node[2], ctx)
        if kind == "and":
            if a is False or b is False:
                return False
            return True if a is True and b is True else UNDEFINED
        if a is True or b is True:
            return True
        return False if a is False and b is False else UNDEFINED
    raise TypeError(kind)


def _call(name: str, args: list, ctx: Context):
    if name == "topic":
        if not args:
            return ctx.topic
        n = args[0]
        levels = ctx.topic.split("/")
        if not _num(n) or int(n) < 1 or int(n) > len(levels):
            return UNDEFINED
        return levels[int(n) - 1]
    if name == "timestamp":
        return ctx.timestamp_ms
    if name == "clientid":
        return ctx.client_id if ctx.client_id else UNDEFINED
    if name == "newuuid":
        return str(uuid.uuid4())
    if not args or args[0] is UNDEFINED:
        return UNDEFINED
    v = args[0]
    if name == "abs":
        return abs(v) if _num(v) else UNDEFINED
    if name == "round":
        return round(v) if _num(v) else UNDEFINED
    if name in ("lower", "upper"):
        return (v.lower() if name == "lower" else v.upper()) if isinstance(v, str) else UNDEFINED
    return UNDEFINED


def run(st: Statement, ctx: Context) -> dict | None:
    """The rule's output for a message, or None when WHERE does not match."""
    if st.where is not None and evaluate(st.where, ctx) is not True:
        return None
    out: dict = {}
    for expr, alias in st.items:
        if expr == "*":
            if isinstance(ctx.doc, dict):
                out.update(ctx.doc)
            continue
        value = evaluate(expr, ctx)
        if value is not UNDEFINED:
            out[alias] = value
    return out


_TEMPLATE = re.compile(r"\$\{([^}]*)\}")


def substitute(template: str, ctx: Context) -> str:
    """A substitution template (``${topic(2)}``, ``${field}``) filled in for a message."""
    def one(m: re.Match) -> str:
        try:
            value = evaluate(_Parser(m.group(1)).expr(), ctx)
        except SqlError:
            return ""
        if value is UNDEFINED or value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value)
    return _TEMPLATE.sub(one, template)
