"""MkDocs hook: the configuration reference, generated at build time from the settings themselves.

`docs/configuration.md` holds the marker `<!-- settings-reference -->`; this hook replaces it with one table per
section of `fleet.settings.Settings` (field, type, default, and the comment written beside the field in the
source), followed by the environment variables of `fleet.settings.ENV_VARS`. A renamed, added or removed
setting changes the page with no edit here. The TOML examples on that page are parsed into `Settings` too, so
an example that names a setting that does not exist fails the build (`mkdocs build --strict`).

Registered in mkdocs.yml (`hooks:`) and excluded from the site's files (`exclude_docs:`).
"""

from __future__ import annotations

import ast
import enum
import inspect
import io
import json
import math
import re
import sys
import tokenize
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

MARKER = "<!-- settings-reference -->"
PAGE = "configuration.md"

_ROOT = Path(__file__).resolve().parent.parent
if str(_ROOT) not in sys.path:  # the repository's packages, also where the project is not installed
    sys.path.insert(0, str(_ROOT))


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    if page.file.src_uri != PAGE:
        return markdown
    import msgspec

    from fleet import settings

    for block in re.findall(r"```toml\n(.*?)```", markdown, flags=re.S):
        try:
            msgspec.convert(tomllib.loads(block), settings.Settings, strict=False)
        except Exception as exc:  # a failed example fails the build, naming what is wrong
            raise ValueError(f"{PAGE}: a TOML example is not a valid configuration: {exc}") from exc
    if MARKER not in markdown:
        raise ValueError(f"{PAGE}: the marker {MARKER} is missing")
    return markdown.replace(MARKER, reference())


def reference() -> str:
    """The reference as Markdown: a section per TOML table, then the environment variables."""
    from contracts.validation import Limits
    from fleet import settings as s

    sections: list[tuple[str, type, str]] = [
        ("Top level", s.Settings, "Keys outside any table."),
        ("[kafka]", s.KafkaSettings, "The brokers, security, topic names and partition counts."),
        ("[latency]", s.LatencySettings, ""),
        ("[limits]", Limits, "Limits every request is checked against (`contracts/validation.py`)."),
        ("[router]", s.RouterSettings, ""),
        ("[[router.tiers]]", s.TierSettings, 'What `"model": "auto"` chooses from, in order ([Routing](routing.md)).'),
        (
            "[[models]]",
            s.ModelSettings,
            "One table per model the fleet serves. With none configured: "
            + "; ".join(f"`{_struct_inline(m)}`" for m in s.default_models())
            + ".",
        ),
        ("[worker]", s.WorkerSettings, ""),
        ("[metrics]", s.MetricsSettings, "[Observability](observability.md)."),
        ("[[tenants]]", s.TenantSettings, "[Tenants and budgets](tenants.md)."),
    ]
    out: list[str] = []
    for title, cls, intro in sections:
        out.append(f"### `{title}`\n" if title.startswith("[") else f"### {title}\n")
        doc = _docstring(cls)
        for text in (intro, doc):
            if text:
                out.append(text + "\n")
        out.append("| key | type | default | what it does |")
        out.append("| --- | --- | --- | --- |")
        comments = _field_comments(cls)
        hints = typing.get_type_hints(cls)
        for f in _fields(cls):
            if cls is s.Settings and f.name in ("kafka", "latency", "limits", "router", "models", "worker", "tenants"):
                continue  # the tables below
            out.append(
                f"| `{f.name}` | {_cell(_type_name(hints[f.name]))} | {_cell(_default(f))} "
                f"| {_cell(comments.get(f.name, ''))} |"
            )
        out.append("")
    out.append("### Environment variables\n")
    out.append("Each overrides the key it names, over the file (`FLEET_CONFIG` names the file itself).\n")
    out.append("| variable | key |")
    out.append("| --- | --- |")
    for var, (section, key) in s.ENV_VARS.items():
        out.append(f"| `{var}` | `{section + '.' if section else ''}{key}` |")
    out.append("")
    return "\n".join(out)


def _fields(cls: type) -> list[Any]:
    import msgspec

    return list(msgspec.structs.fields(cls))


def _docstring(cls: type) -> str:
    doc = cls.__dict__.get("__doc__")
    return inspect.cleandoc(doc).replace("\n\n", " ").replace("\n", " ") if doc else ""


def _field_comments(cls: type) -> dict[str, str]:
    """The comments beside each field in the class's source: the block right above it and the one on its line."""
    source_lines, _ = inspect.getsourcelines(cls)
    source = _dedent("".join(source_lines))
    comments: dict[int, str] = {}  # line -> comment text
    code_lines: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER):
            code_lines.add(tok.start[0])
    tree = ast.parse(source)
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    out: dict[str, str] = {}
    for node in body:
        if not (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)):
            continue
        above: list[str] = []
        line = node.lineno - 1
        while line in comments and line not in code_lines:
            above.insert(0, comments[line])
            line -= 1
        beside = [comments[node.lineno]] if node.lineno in comments else []  # not those inside a multi-line default
        text = " ".join(above + beside).strip()
        if text:
            out[node.target.id] = text
    return out


def _dedent(text: str) -> str:
    lines = text.splitlines()
    indent = min((len(ln) - len(ln.lstrip()) for ln in lines if ln.strip()), default=0)
    return "\n".join(ln[indent:] for ln in lines) + "\n"


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        name = " or ".join(_type_name(a) for a in rest)
        return f"{name} (optional)" if len(rest) < len(args) else name
    if origin is list:
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"table of {_type_name(args[0])} to {_type_name(args[1])}" if args else "table"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " \\| ".join(f'`"{m.value}"`' for m in tp)
    if isinstance(tp, type):
        import msgspec

        if issubclass(tp, msgspec.Struct):
            return "table"
        return {"str": "string", "int": "integer", "float": "float", "bool": "boolean"}.get(tp.__name__, tp.__name__)
    return str(tp)


def _default(f: Any) -> str:
    import msgspec

    if f.default is not msgspec.NODEFAULT:
        value = f.default
    elif f.default_factory is not msgspec.NODEFAULT:
        value = f.default_factory()
    else:
        return "required"
    if isinstance(value, list) and value and isinstance(value[0], msgspec.Struct):
        return "; ".join(_struct_inline(v) for v in value)
    return _toml(value)


def _struct_inline(value: Any) -> str:
    """A struct as an inline table of its non-default fields (the default tiers, the default models)."""
    import msgspec

    parts = []
    for f in msgspec.structs.fields(value):
        v = getattr(value, f.name)
        default = f.default if f.default is not msgspec.NODEFAULT else None
        if f.default is msgspec.NODEFAULT or v != default:
            parts.append(f"{f.name} = {_toml(v)}")
    return "{" + ", ".join(parts) + "}"


def _toml(value: Any) -> str:
    if value is None:
        return "unset"
    if isinstance(value, enum.Enum):
        return json.dumps(value.value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _cell(text: str) -> str:
    """Safe inside a Markdown table cell: no line breaks; outside code spans, pipes escaped and no `<` that
    could read as an HTML tag (`<salt hex>`)."""
    parts = re.split(r"(`[^`]*`)", text.replace("\n", " "))
    parts = [p if p.startswith("`") else re.sub(r"(?<!\\)\|", r"\\|", p.replace("<", "&lt;")) for p in parts]
    return "".join(parts)  # a pipe inside a code span is not a column separator to Python-Markdown's tables
