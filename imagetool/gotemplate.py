"""The subset of Go's text/template that docker's `--format` uses, over JSON-like data:
`{{.Field.Sub}}`, `{{.}}`, `{{json .}}`, `{{index .Labels "k"}}`, `{{join .Args ","}}`,
`upper`, `lower`, `title`, `len`, `println`, pipes (`{{.Names | upper}}`), and
`{{range .X}}...{{end}}`, `{{if .X}}...{{else}}...{{end}}`. Values print as Go prints them
(`[a b]`, `map[k:v]`, `true`, `<no value>` for a missing key). `\\t` and `\\n` in the format
become tab and newline, as docker does. Errors are TemplateError with a one-line message."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

from imagetool.errors import ImagetoolError

_ACTION = re.compile(r"{{(-?)\s*(.*?)\s*(-?)}}", re.S)


class TemplateError(ImagetoolError, ValueError):
    pass


def go_str(v: Any) -> str:
    """fmt.Sprint of a JSON value."""
    if v is None:
        return "<no value>"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, list):
        return "[" + " ".join(go_str(x) for x in v) + "]"
    if isinstance(v, dict):
        return "map[" + " ".join(f"{k}:{go_str(v[k])}" for k in sorted(v)) + "]"
    return str(v)


def _truthy(v: Any) -> bool:
    return bool(v)


def _tokens(text: str) -> list[str]:
    try:
        lex = shlex.shlex(text, posix=False, punctuation_chars="|")
        lex.whitespace_split = True
        return list(lex)
    except ValueError as e:
        raise TemplateError(f"template: bad action {{{{{text}}}}}: {e}") from None


def _field(dot: Any, path: str) -> Any:
    v = dot
    for part in [p for p in path.split(".") if p]:
        if isinstance(v, dict):
            v = v.get(part)
        else:
            raise TemplateError(f"template: can't evaluate field {part} in {type(v).__name__}")
    return v


def _arg(tok: str, dot: Any, vars: dict[str, Any]) -> Any:
    if tok.startswith("."):
        return _field(dot, tok)
    if tok.startswith("$"):
        name, _, rest = tok.partition(".")
        if name not in vars:
            raise TemplateError(f"template: undefined variable {name}")
        return _field(vars[name], rest)
    if tok[:1] in "\"'`":
        return tok[1:-1].encode().decode("unicode_escape") if tok[0] == '"' else tok[1:-1]
    if re.fullmatch(r"-?\d+", tok):
        return int(tok)
    if tok in ("true", "false"):
        return tok == "true"
    if tok == "nil":
        return None
    raise TemplateError(f'template: function "{tok}" not defined')


def _call(name: str, args: list[Any]) -> Any:
    if name == "json":
        return json.dumps(args[0] if args else None, separators=(",", ":"))
    if name == "index":
        v = args[0]
        for k in args[1:]:
            v = v.get(k) if isinstance(v, dict) else (v[k] if isinstance(v, list) else None)
        return v
    if name == "join":
        return str(args[1]).join(go_str(x) for x in args[0] or [])
    if name in ("upper", "lower", "title"):
        return getattr(go_str(args[0]), name)()
    if name == "len":
        return len(args[0] or [])
    if name == "println":
        return " ".join(go_str(a) for a in args) + "\n"
    if name == "print":
        return "".join(go_str(a) for a in args)
    if name == "printf":
        fmt = re.sub(r"%[-+# 0-9.]*[vq]", "%s", str(args[0]))
        return fmt % tuple(go_str(a) if not isinstance(a, int | float) else a
                           for a in args[1:])
    raise TemplateError(f'template: function "{name}" not defined')


_FUNCS = {"json", "index", "join", "upper", "lower", "title", "len", "println", "print",
          "printf"}


def _pipeline(text: str, dot: Any, vars: dict[str, Any]) -> Any:
    toks = _tokens(text)
    cmds: list[list[str]] = [[]]
    for t in toks:
        if t == "|":
            cmds.append([])
        else:
            cmds[-1].append(t)
    result: Any = None
    for i, cmd in enumerate(cmds):
        if not cmd:
            raise TemplateError(f"template: missing command in {{{{{text}}}}}")
        head, rest = cmd[0], [_arg(t, dot, vars) for t in cmd[1:]]
        if i > 0:
            rest.append(result)
        if head in _FUNCS:
            result = _call(head, rest)
        elif len(cmd) == 1 and i == 0:
            result = _arg(head, dot, vars)
        else:
            raise TemplateError(f"template: can't give arguments to {head}")
    return result


def parse(fmt: str) -> list[Any]:
    """A tree: text strings and (kind, pipeline, body, else_body) nodes."""
    fmt = fmt.replace("\\t", "\t").replace("\\n", "\n")
    pos = 0
    stack: list[Any] = [("root", "", [], None)]
    cur: list[Any] = stack[0][2]
    for m in _ACTION.finditer(fmt):
        text = fmt[pos:m.start()]
        if m.group(1):
            text = text.rstrip()
        if text:
            cur.append(text)
        pos = m.end()
        act = m.group(2)
        if m.group(3):
            rest = fmt[pos:]
            pos += len(rest) - len(rest.lstrip())
        word = act.split(None, 1)[0] if act else ""
        if act.startswith("/*"):
            continue
        if word in ("range", "if", "with"):
            node: list[Any] = [word, act[len(word):].strip(), [], None]
            cur.append(node)
            stack.append(node)
            cur = node[2]
        elif word == "else":
            if len(stack) < 2:
                raise TemplateError("template: unexpected {{else}}")
            stack[-1][3] = []
            cur = stack[-1][3]
        elif word == "end":
            if len(stack) < 2:
                raise TemplateError("template: unexpected {{end}}")
            stack.pop()
            top = stack[-1]
            cur = top[3] if top[3] is not None else top[2]
        else:
            cur.append(("pipe", act))
    if len(stack) > 1:
        raise TemplateError(f"template: unexpected EOF (an unclosed {{{{{stack[-1][0]}}}}})")
    tail = fmt[pos:]
    if "{{" in tail:
        raise TemplateError("template: unclosed action")
    if tail:
        cur.append(tail)
    return stack[0][2]


def _run(nodes: list[Any], dot: Any, vars: dict[str, Any], out: list[str]) -> None:
    for n in nodes:
        if isinstance(n, str):
            out.append(n)
        elif isinstance(n, tuple):
            act = n[1]
            m = re.fullmatch(r"(\$\w+)\s*:=\s*(.*)", act, re.S)
            if m:
                vars[m.group(1)] = _pipeline(m.group(2), dot, vars)
                continue
            out.append(go_str(_pipeline(act, dot, vars)))
        else:
            kind, pipe, body, other = n
            if kind == "range":
                m = re.fullmatch(r"(?:(\$\w+)\s*(?:,\s*(\$\w+))?\s*:=\s*)?(.*)", pipe, re.S)
                assert m is not None
                v = _pipeline(m.group(3), dot, vars)
                items = list(v.items()) if isinstance(v, dict) else \
                    list(enumerate(v or []))
                if not items and other is not None:
                    _run(other, dot, vars, out)
                for k, item in items:
                    inner = dict(vars)
                    if m.group(2):
                        inner[m.group(1)], inner[m.group(2)] = k, item
                    elif m.group(1):
                        inner[m.group(1)] = item
                    _run(body, item, inner, out)
            else:
                v = _pipeline(pipe, dot, vars)
                if _truthy(v):
                    _run(body, v if kind == "with" else dot, vars, out)
                elif other is not None:
                    _run(other, dot, vars, out)


def render(fmt: str | list[Any], data: Any) -> str:
    """Execute the template (text or a parse() tree) with `data` as dot."""
    tree = parse(fmt) if isinstance(fmt, str) else fmt
    out: list[str] = []
    _run(tree, data, {"$": data}, out)
    return "".join(out)


def tabulate(lines: list[str], padding: int = 3, minwidth: int = 10) -> list[str]:
    """Go's tabwriter as docker's tables use it: tab-separated cells padded to the column's
    widest cell (at least `minwidth`) plus `padding`; the last cell is not padded."""
    rows = [line.split("\t") for line in lines]
    ncol = max((len(r) for r in rows), default=0)
    widths = [0] * ncol
    for r in rows:
        for i, c in enumerate(r[:-1]):
            widths[i] = max(widths[i], len(c) + padding, minwidth)
    return ["".join(c.ljust(widths[i]) for i, c in enumerate(r[:-1])) + r[-1] for r in rows]


def format_rows(fmt: str, rows: list[dict[str, Any]], headers: dict[str, str]) -> list[str]:
    """docker's --format for list verbs: `table ...` prints a header (each {{.Field}} shown
    as headers[Field]) and aligns tab-separated columns; `json` is `{{json .}}` per row."""
    if fmt == "json":
        fmt = "{{json .}}"
    table = fmt.startswith("table")
    if table:
        fmt = fmt[len("table"):].strip() or "\t".join(f"{{{{.{k}}}}}" for k in headers)
    tree = parse(fmt)
    lines = [render(tree, r) for r in rows]
    if not table:
        return lines
    head = render(tree, {k: headers.get(k, k.upper()) for k in {**headers, **(rows[0] if rows
                                                                               else {})}})
    return tabulate([head, *lines])
