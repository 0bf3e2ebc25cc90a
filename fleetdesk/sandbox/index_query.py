"""Fleet indexing's query syntax, parsed and translated to SQL over the index's ``fields`` table.

Hand-written (the emulator side): AWS's syntax is Lucene-like but not Lucene (no fuzzy,
boost, regex; twelve terms at most; one leading wildcard), and no library parses exactly it.
What AWS accepts (https://docs.aws.amazon.com/iot/latest/developerguide/query-syntax.html
and example-queries.html):

* ``field:value``; a bare ``value`` searches every field; ``*`` alone matches every thing
* wildcards ``*`` and ``?`` in a value (``thingName:my*``, ``thingName:ab?``); a leading
  wildcard in one term of the query at most, and then the query is at most 100 characters
* ranges ``[a TO b]``, ``{a TO b}`` and mixed, ``*`` as an open end; numeric when both
  ends are numbers, else string ranges
* ``AND``, ``OR``, ``NOT``, ``-term``, grouping ``( )``, field grouping ``thingName:(a* AND -ab)``,
  quoted phrases, ``\\`` escapes; the default operator is AND
* matching is case-insensitive; field names are case-sensitive
* refused: more than twelve terms, the special characters `` ` @ # % / ' ; , `` unescaped,
  unbalanced parentheses or brackets, a missing operand. Refusals raise :class:`QueryError`,
  which the routes answer as AWS's ``InvalidQueryException``.

:func:`to_sql` returns ``(sql, args)``: a boolean SQL expression over ``things.name`` that
uses ``fields(thing, field, lv, num)`` (``lv`` = the lowered string value, ``num`` = the value
as a number when it is one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

MAX_TERMS = 12
MAX_LEADING_WILDCARD_QUERY = 100
_UNSUPPORTED = set("`@#%/';,")
_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


class QueryError(ValueError):
    """A query AWS would refuse (message says what and where)."""


@dataclass
class Term:
    field: str | None
    value: str            # raw text (unescaped)
    wildcard: bool        # value contains an unescaped * or ?
    pattern: str          # GLOB pattern over lowered values (when wildcard)


@dataclass
class Range:
    field: str | None
    low: str | None
    high: str | None
    low_inclusive: bool
    high_inclusive: bool


@dataclass
class Not:
    node: object


@dataclass
class Bool:
    op: str  # "AND" | "OR"
    nodes: list


@dataclass
class MatchAll:
    pass


# -- tokenizer ------------------------------------------------------------------------
_SINGLE = "()[]{}:"


def _tokens(text: str) -> list[tuple[str, str, bool, str]]:
    """(kind, text, wildcard, glob) tokens: kind is one of ( ) [ ] { } : WORD PHRASE MINUS."""
    out: list[tuple[str, str, bool, str]] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if c in _SINGLE:
            out.append((c, c, False, ""))
            i += 1
            continue
        if c == '"':
            j, buf = i + 1, []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                buf.append(text[j])
                j += 1
            if j >= n:
                raise QueryError(f"unterminated quoted phrase at position {i}")
            phrase = "".join(buf)
            out.append(("PHRASE", phrase, False, _glob_literal(phrase.lower())))
            i = j + 1
            continue
        if c == "-" and (not out or out[-1][0] in ("(", ":", "WORD", "PHRASE", ")", "]", "}")) \
                and i + 1 < n and not text[i + 1].isspace():
            out.append(("MINUS", "-", False, ""))
            i += 1
            continue
        j, raw, glob, wild = i, [], [], False
        while j < n and not text[j].isspace() and text[j] not in _SINGLE and text[j] != '"':
            ch = text[j]
            if ch == "\\":
                if j + 1 >= n:
                    raise QueryError("a query may not end with a lone backslash")
                j += 1
                raw.append(text[j])
                glob.append(_glob_literal(text[j].lower()))
            elif ch in _UNSUPPORTED:
                raise QueryError(f"the character {ch!r} is not supported in fleet indexing queries "
                                 f"(escape it with a backslash)")
            elif ch in "*?":
                raw.append(ch)
                glob.append(ch)
                wild = True
            else:
                raw.append(ch)
                glob.append(_glob_literal(ch.lower()))
            j += 1
        out.append(("WORD", "".join(raw), wild, "".join(glob)))
        i = j
    return out


def _glob_literal(s: str) -> str:
    return "".join(f"[{c}]" if c in "*?[]" else c for c in s)


# -- parser ---------------------------------------------------------------------------
class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.i = 0
        self.terms = 0
        self.leading_wildcards = 0

    def peek(self, k: int = 0):
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def take(self, kind: str | None = None):
        tok = self.peek()
        if tok is None or (kind and tok[0] != kind):
            want = f"{kind!r}" if kind else "more input"
            raise QueryError(f"expected {want} at the end of the query" if tok is None
                             else f"expected {want} but found {tok[1]!r}")
        self.i += 1
        return tok

    def parse(self):
        if not self.toks:
            raise QueryError("the query string is empty")
        node = self.or_expr(None)
        if self.peek() is not None:
            raise QueryError(f"unexpected {self.peek()[1]!r}")
        if self.terms > MAX_TERMS:
            raise QueryError(f"the query has {self.terms} terms; fleet indexing allows at most {MAX_TERMS}")
        if self.leading_wildcards > 1:
            raise QueryError("a leading wildcard may be used in one query term only")
        if self.leading_wildcards and len(self.text) > MAX_LEADING_WILDCARD_QUERY:
            raise QueryError(f"a query with a leading wildcard may be at most {MAX_LEADING_WILDCARD_QUERY} characters")
        return node

    def _is_op(self, word: str) -> bool:
        tok = self.peek()
        return tok is not None and tok[0] == "WORD" and tok[1] == word

    def or_expr(self, field):
        nodes = [self.and_expr(field)]
        while self._is_op("OR"):
            self.take()
            nodes.append(self.and_expr(field))
        return nodes[0] if len(nodes) == 1 else Bool("OR", nodes)

    def and_expr(self, field):
        nodes = [self.unary(field)]
        while True:
            tok = self.peek()
            if tok is None or tok[0] in (")",) or self._is_op("OR"):
                break
            if self._is_op("AND"):
                self.take()
            nodes.append(self.unary(field))
        return nodes[0] if len(nodes) == 1 else Bool("AND", nodes)

    def unary(self, field):
        if self._is_op("NOT"):
            self.take()
            return Not(self.unary(field))
        if self.peek() and self.peek()[0] == "MINUS":
            self.take()
            return Not(self.unary(field))
        return self.primary(field)

    def primary(self, field):
        tok = self.peek()
        if tok is None:
            raise QueryError("a term is missing at the end of the query")
        kind = tok[0]
        if kind == "(":
            self.take()
            node = self.or_expr(field)
            self.take(")")
            return node
        if kind in ("[", "{"):
            return self.range(field)
        if kind == "WORD" and tok[1] in ("AND", "OR"):
            raise QueryError(f"{tok[1]} needs a term on both sides")
        if kind in ("WORD", "PHRASE"):
            nxt = self.peek(1)
            if kind == "WORD" and field is None and nxt is not None and nxt[0] == ":":
                name = tok[1]
                if tok[2] or not name:
                    raise QueryError(f"invalid field name {name!r}")
                self.take()
                self.take(":")
                value = self.peek()
                if value is None:
                    raise QueryError(f"the field {name} has no value")
                if value[0] == "(":
                    self.take()
                    node = self.or_expr(name)
                    self.take(")")
                    return node
                if value[0] == "MINUS":
                    raise QueryError(f"the value of {name} may not start with '-' (put NOT before the field)")
                return self.primary(name)
            self.take()
            return self.term(field, tok)
        raise QueryError(f"unexpected {tok[1]!r}")

    def term(self, field, tok):
        self.terms += 1
        _, value, wild, glob = tok
        if value == "*" and wild:
            return MatchAll() if field is None else Term(field, "*", True, "*")
        if wild and glob[:1] in ("*", "?"):
            self.leading_wildcards += 1
        return Term(field, value, wild, glob)

    def range(self, field):
        if field is None:
            raise QueryError("a range needs a field (field:[low TO high])")
        self.terms += 1
        open_tok = self.take()
        low = self.take("WORD")[1] if self.peek() and self.peek()[0] in ("WORD",) else None
        if low is None:
            low = self.take("PHRASE")[1]
        if not self._is_op("TO"):
            raise QueryError("a range is written [low TO high]")
        self.take()
        tok = self.take()
        if tok[0] not in ("WORD", "PHRASE"):
            raise QueryError("a range is written [low TO high]")
        high = tok[1]
        close = self.take()
        if close[0] not in ("]", "}"):
            raise QueryError("a range must end with ] or }")
        return Range(field, None if low == "*" else low, None if high == "*" else high,
                     open_tok[0] == "[", close[0] == "]")


def parse(text: str):
    """The query's syntax tree. Raises :class:`QueryError`."""
    if not isinstance(text, str):
        raise QueryError("the query must be a string")
    return _Parser(text).parse()


# -- SQL ------------------------------------------------------------------------------
def _num(s: str | None) -> float | None:
    return float(s) if s is not None and _NUMBER.match(s) else None


def _sub(field: str | None, cond: str) -> str:
    where = ("field=? AND " if field is not None else "") + cond
    return f"name IN (SELECT thing FROM fields WHERE {where})"


def to_sql(node) -> tuple[str, list]:
    """(boolean SQL expression over ``things``, its arguments)."""
    args: list = []

    def walk(n) -> str:
        if isinstance(n, MatchAll):
            return "1"
        if isinstance(n, Not):
            return f"NOT ({walk(n.node)})"
        if isinstance(n, Bool):
            return "(" + f" {n.op} ".join(walk(x) for x in n.nodes) + ")"
        if isinstance(n, Term):
            pre = [n.field] if n.field is not None else []
            if n.wildcard:
                if n.pattern == "*":
                    args.extend(pre)
                    return _sub(n.field, "1")
                args.extend(pre + [n.pattern])
                return _sub(n.field, "lv GLOB ?")
            args.extend(pre + [n.value.lower()])
            return _sub(n.field, "lv=?")
        if isinstance(n, Range):
            lo, hi = _num(n.low), _num(n.high)
            numeric = (n.low is None or lo is not None) and (n.high is None or hi is not None)
            col = "num" if numeric else "lv"
            conds, vals = [f"{col} IS NOT NULL"], []
            if n.low is not None:
                conds.append(f"{col} {'>=' if n.low_inclusive else '>'} ?")
                vals.append(lo if numeric else n.low.lower())
            if n.high is not None:
                conds.append(f"{col} {'<=' if n.high_inclusive else '<'} ?")
                vals.append(hi if numeric else n.high.lower())
            args.extend([n.field] + vals)
            return _sub(n.field, " AND ".join(conds))
        raise TypeError(n)

    return walk(node), args


def query_sql(text: str) -> tuple[str, list]:
    """Parse ``text`` and translate it. Raises :class:`QueryError`."""
    return to_sql(parse(text))
