"""A small PromQL reader for checking dashboards against what the planes really export.

Not a full PromQL parser: it tokenizes a query and classifies every identifier as a function,
an aggregation, a keyword, a label name (inside ``{…}`` matchers or ``by/without/on/…(…)``
lists) or a metric name, and remembers which metrics each label list applies to. That is enough
to say, for every query of a dashboard: which series it reads, with which label matchers and
groupings, and whether counters are read through ``rate``/``increase``. Anything it does not
understand (an unknown function, an unbalanced bracket, a bare ``{…}`` selector) is an error,
so a typo cannot pass as a metric name.

:func:`check` then holds the queries against a scrape parsed by ``prometheus_client``'s parser.

This module is long because the tokenizer and the classifier read one grammar (functions,
aggregations, matchers, grouping lists) and are only checkable together; split, the grammar's
tables would sit away from the code that applies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from prometheus_client.metrics_core import Metric

FUNCTIONS = frozenset(
    """
    abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp
    clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year
    days_in_month deg delta deriv double_exponential_smoothing exp floor histogram_avg
    histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar
    histogram_sum holt_winters hour idelta increase info irate label_join label_replace
    last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi
    predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin sinh
    sort sort_by_label sort_by_label_desc sort_desc sqrt stddev_over_time stdvar_over_time
    sum_over_time tan tanh time timestamp vector year
    """.split()
)
AGGREGATIONS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk "
    "limit_ratio".split()
)
# Grafana's templating functions (variable queries only).
GRAFANA_FUNCTIONS = frozenset({"label_values", "label_names", "metrics", "query_result"})
LABEL_LIST_KEYWORDS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end"}
)
COUNTER_FUNCTIONS = frozenset({"rate", "irate", "increase", "resets"})
# Labels Prometheus adds when it scrapes a target: never in the exposition itself.
TARGET_LABELS = frozenset({"instance", "job"})
# Grafana's built-in variables.
GRAFANA_BUILTINS = frozenset(
    {"__rate_interval", "__interval", "__interval_ms", "__range", "__range_s", "__range_ms"}
)

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    |(?P<var>\$\{[A-Za-z_][A-Za-z0-9_]*(?::[A-Za-z]+)?\}|\$[A-Za-z_][A-Za-z0-9_]*
        |\[\[[A-Za-z_][A-Za-z0-9_]*\]\])
    |(?P<duration>\d+(?:ms|[smhdwy])(?:\d+(?:ms|[smhdwy]))*(?![A-Za-z0-9_]))
    |(?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<ident>[A-Za-z_:][A-Za-z0-9_:]*)
    |(?P<op>=~|!~|!=|==|<=|>=|[-+*/%^<>=,(){}\[\]@:])
    """,
    re.X,
)
_OPEN = {"(": ")", "{": "}", "[": "]"}
_VARIABLE = re.compile(
    r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[A-Za-z]+)?\}|\$([A-Za-z_][A-Za-z0-9_]*)"
    r"|\[\[([A-Za-z_][A-Za-z0-9_]*)\]\]"
)


class PromQLError(ValueError):
    """The query is not one this reader understands (or is not valid PromQL)."""


@dataclass(frozen=True)
class Token:
    kind: str  # string | var | duration | number | ident | op
    text: str


@dataclass(frozen=True)
class Selector:
    """One metric read by a query: ``name{label op "value", …}``."""

    name: str
    matchers: tuple[tuple[str, str, str], ...]  # (label, op, value without quotes)
    index: int  # position of its name in the token list
    counter_function: str  # the innermost rate/irate/increase/resets around it, or ""
    in_histogram_quantile: bool


@dataclass(frozen=True)
class LabelUse:
    """Label names a query groups or matches by, and the metrics they must exist on."""

    keyword: str  # by, without, on, ignoring, group_left, group_right, label_values
    labels: tuple[str, ...]
    metrics: tuple[str, ...]  # each must carry every label (any one of them for group_*)
    in_histogram_quantile: bool


@dataclass(frozen=True)
class Query:
    expr: str
    selectors: tuple[Selector, ...]
    label_uses: tuple[LabelUse, ...]
    variables: frozenset[str]  # Grafana variables it refers to, without the $


def tokenize(expr: str) -> list[Token]:
    tokens: list[Token] = []
    pos = 0
    while pos < len(expr):
        m = _TOKEN.match(expr, pos)
        if m is None:
            raise PromQLError(f"cannot read {expr[pos : pos + 20]!r} in {expr!r}")
        kind = m.lastgroup
        assert kind is not None
        if kind != "ws":
            tokens.append(Token(kind, m.group()))
        pos = m.end()
    return tokens


def _matching(tokens: list[Token], expr: str) -> dict[int, int]:
    """Index of each opening bracket -> index of its closing one (and back)."""
    stack: list[int] = []
    pairs: dict[int, int] = {}
    for i, tok in enumerate(tokens):
        if tok.kind != "op":
            continue
        if tok.text in _OPEN:
            stack.append(i)
        elif tok.text in (")", "}", "]"):
            if not stack or _OPEN[tokens[stack[-1]].text] != tok.text:
                raise PromQLError(f"unbalanced {tok.text!r} in {expr!r}")
            j = stack.pop()
            pairs[j], pairs[i] = i, j
    if stack:
        raise PromQLError(f"unclosed {tokens[stack[-1]].text!r} in {expr!r}")
    return pairs


def _unquote(text: str) -> str:
    if text.startswith("`"):
        return text[1:-1]
    return re.sub(r"\\(.)", r"\1", text[1:-1])


@dataclass
class _Reader:
    expr: str
    tokens: list[Token]
    pairs: dict[int, int]
    selectors: list[Selector] = field(default_factory=list)
    label_uses: list[LabelUse] = field(default_factory=list)
    # (start, end, function name) of every function call's argument group
    calls: list[tuple[int, int, str]] = field(default_factory=list)
    label_lists: list[tuple[int, int, str]] = field(default_factory=list)

    def fail(self, why: str) -> PromQLError:
        return PromQLError(f"{why} in {self.expr!r}")

    def is_op(self, i: int, text: str) -> bool:
        return (
            0 <= i < len(self.tokens)
            and self.tokens[i].kind == "op"
            and (self.tokens[i].text == text)
        )

    def ident_at(self, i: int) -> str:
        if 0 <= i < len(self.tokens) and self.tokens[i].kind == "ident":
            return self.tokens[i].text
        return ""

    def labels_in(self, start: int, end: int) -> tuple[str, ...]:
        names = []
        for tok in self.tokens[start + 1 : end]:
            if tok.kind == "ident":
                names.append(tok.text)
            elif not (tok.kind == "op" and tok.text == ","):
                raise self.fail(f"unexpected {tok.text!r} in a label list")
        if not names:
            raise self.fail("empty label list")
        return tuple(names)

    def read(self) -> None:
        toks = self.tokens
        i = 0
        while i < len(toks):
            tok = toks[i]
            if tok.kind == "op" and tok.text == "{":
                raise self.fail("a selector without a metric name")
            if tok.kind == "op" and tok.text == "[":
                i = self.pairs[i] + 1  # a range or subquery: durations and variables only
                continue
            if tok.kind != "ident":
                i += 1
                continue
            name = tok.text
            followed_by_paren = self.is_op(i + 1, "(")
            if name in LABEL_LIST_KEYWORDS:
                if not followed_by_paren:
                    if name in ("group_left", "group_right"):
                        i += 1
                        continue
                    raise self.fail(f"{name} without a label list")
                end = self.pairs[i + 1]
                self.label_lists.append((i, end, name))
                i = end + 1
                continue
            if name in KEYWORDS:
                i += 1
                continue
            if followed_by_paren or (
                name in AGGREGATIONS and self.ident_at(i + 1) in ("by", "without")
            ):
                if name not in FUNCTIONS | AGGREGATIONS | GRAFANA_FUNCTIONS:
                    raise self.fail(f"unknown function {name}()")
                if followed_by_paren:
                    self.calls.append((i + 1, self.pairs[i + 1], name))
                i += 1
                continue
            i = self.selector(i)
        self.resolve_label_lists()

    def selector(self, i: int) -> int:
        name = self.tokens[i].text
        matchers: list[tuple[str, str, str]] = []
        end = i
        if self.is_op(i + 1, "{"):
            end = self.pairs[i + 1]
            body = self.tokens[i + 2 : end]
            k = 0
            while k < len(body):
                label, op, value = body[k : k + 3] if k + 3 <= len(body) else (None, None, None)
                if (
                    label is None
                    or op is None
                    or value is None
                    or label.kind != "ident"
                    or op.text not in ("=", "!=", "=~", "!~")
                    or value.kind != "string"
                ):
                    raise self.fail(f"cannot read the matchers of {name}")
                matchers.append((label.text, op.text, _unquote(value.text)))
                k += 3
                if k < len(body):
                    if not (body[k].kind == "op" and body[k].text == ","):
                        raise self.fail(f"cannot read the matchers of {name}")
                    k += 1
        self.selectors.append(Selector(name, tuple(matchers), i, "", False))
        return end + 1

    def enclosing_calls(self, index: int) -> list[str]:
        """Function names whose argument group contains ``index``, innermost first."""
        around = [(s, e, n) for s, e, n in self.calls if s < index < e]
        return [n for _, _, n in sorted(around, key=lambda c: c[0], reverse=True)]

    def metrics_between(self, start: int, end: int) -> tuple[str, ...]:
        return tuple(s.name for s in self.selectors if start < s.index < end)

    def resolve_label_lists(self) -> None:
        # Selectors learn what they are wrapped in.
        resolved = []
        for s in self.selectors:
            calls = self.enclosing_calls(s.index)
            counter = next((c for c in calls if c in COUNTER_FUNCTIONS), "")
            resolved.append(
                Selector(s.name, s.matchers, s.index, counter, "histogram_quantile" in calls)
            )
        self.selectors = resolved
        everywhere = (-1, len(self.tokens))
        for start, end, keyword in self.label_lists:
            labels = self.labels_in(start + 1, end)
            if keyword in ("by", "without"):
                span = self.aggregated_span(start, end, keyword)
            else:  # vector matching: both sides of the binary operation
                span = everywhere
            metrics = self.metrics_between(*span)
            in_hq = "histogram_quantile" in self.enclosing_calls(start)
            self.label_uses.append(LabelUse(keyword, labels, metrics, in_hq))
        for start, end, name in self.calls:
            if name == "label_values":
                # label_values(selector, label) or label_values(label)
                label = self.tokens[end - 1]
                if label.kind != "ident" or not (
                    self.is_op(end - 2, ",") or self.is_op(end - 2, "(")
                ):
                    raise self.fail("label_values() must end with a label name")
                self.selectors = [s for s in self.selectors if s.index != end - 1]
                metrics = self.metrics_between(start, end - 1)
                self.label_uses.append(LabelUse("label_values", (label.text,), metrics, False))

    def aggregated_span(self, start: int, end: int, keyword: str) -> tuple[int, int]:
        """The argument group of the aggregation a ``by``/``without`` list belongs to."""
        before = self.ident_at(start - 1)
        if before in AGGREGATIONS and self.is_op(end + 1, "("):  # sum by (l) (expr)
            return end + 1, self.pairs[end + 1]
        if self.is_op(start - 1, ")"):  # sum (expr) by (l)
            opening = self.pairs[start - 1]
            if self.ident_at(opening - 1) in AGGREGATIONS:
                return opening, start - 1
        raise self.fail(f"{keyword} (…) not attached to an aggregation")


def read(expr: str) -> Query:
    """Classify every identifier of ``expr``; :class:`PromQLError` when it cannot."""
    tokens = tokenize(expr)
    reader = _Reader(expr, tokens, _matching(tokens, expr))
    reader.read()
    # Variables count inside label-matcher strings too ({workspace=~"$workspace"}).
    variables = frozenset(m.group(1) or m.group(2) or m.group(3) for m in _VARIABLE.finditer(expr))
    return Query(expr, tuple(reader.selectors), tuple(reader.label_uses), variables)


# ---- against a scrape ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One series name as exported (``x_total``, ``x_bucket``, a gauge's own name, …)."""

    family: str
    type: str  # counter | gauge | histogram | …
    labels: frozenset[str]
    values: dict[str, frozenset[str]]  # label -> values seen
    sampled: bool  # False: the family is declared (HELP/TYPE) but has no sample yet


def exported_series(families: Iterable[Metric]) -> dict[str, Series]:
    """Every series name of the parsed families (``prometheus_client.parser`` output)."""
    out: dict[str, Series] = {}
    for fam in families:
        seen: dict[str, dict[str, set[str]]] = {}
        for sample in fam.samples:
            per = seen.setdefault(sample.name, {})
            for label, value in sample.labels.items():
                per.setdefault(label, set()).add(value)
        if fam.type == "counter":
            names = [fam.name + "_total"]
        elif fam.type == "histogram":
            names = [fam.name + s for s in ("_bucket", "_sum", "_count")]
        else:
            names = [fam.name]
        for name in {*names, *seen}:
            per = seen.get(name, {})
            values = {label: frozenset(v) for label, v in per.items()}
            out[name] = Series(fam.name, fam.type, frozenset(values), values, name in seen)
    return out


def check(
    query: Query, series: dict[str, Series], variables: frozenset[str], *, variable: bool = False
) -> list[str]:
    """What is wrong with ``query`` against the exported ``series`` (empty: nothing).

    ``variables`` are the dashboard's template variables; ``variable`` is True for a template
    variable's own query (``label_values(counter_total, label)`` reads a counter's labels, not
    its value, so it needs no ``rate()``)."""
    problems: list[str] = []
    for var in sorted(query.variables - variables - GRAFANA_BUILTINS):
        problems.append(f"${var} is not a dashboard variable")
    for sel in query.selectors:
        s = series.get(sel.name)
        if s is None:
            problems.append(f"{sel.name} is not exported by the data plane or the control plane")
            continue
        if not s.sampled:
            problems.append(f"{sel.name} had no sample in the scrape: its labels cannot be checked")
            continue
        known = s.labels | TARGET_LABELS | {"__name__"}
        for label, op, value in sel.matchers:
            if label not in known:
                problems.append(f"{sel.name} has no label {label!r} (has {sorted(s.labels)})")
            elif op == "=" and "$" not in value and label in s.values:
                if value not in s.values[label]:
                    problems.append(
                        f"{sel.name}{{{label}={value!r}}} matches nothing: {label} is one of "
                        f"{sorted(s.values[label])}"
                    )
        cumulative = s.type in ("counter", "histogram") and sel.name != s.family
        if cumulative and not sel.counter_function and not variable:
            problems.append(f"{sel.name} is a counter: read it with rate() or increase()")
        if not cumulative and sel.counter_function:
            problems.append(f"{sel.name} is a {s.type}: {sel.counter_function}() needs a counter")
        if sel.in_histogram_quantile and not sel.name.endswith("_bucket"):
            problems.append(f"histogram_quantile() over {sel.name}, not a _bucket series")
    for use in query.label_uses:
        have = [series[m].labels | TARGET_LABELS for m in use.metrics if m in series]
        if not use.metrics and use.keyword != "label_values":
            problems.append(f"{use.keyword} ({', '.join(use.labels)}) applies to no metric")
        for label in use.labels:
            carriers = [label in labels for labels in have]
            ok = any(carriers) if use.keyword in ("group_left", "group_right") else all(carriers)
            if not ok:
                problems.append(
                    f"{use.keyword} ({label}): not a label of {', '.join(sorted(set(use.metrics)))}"
                )
        if use.in_histogram_quantile and use.keyword == "by" and "le" not in use.labels:
            problems.append(f"histogram_quantile() over by ({', '.join(use.labels)}) without le")
    return problems
