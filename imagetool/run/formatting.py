"""`--format` for every verb, one shape everywhere: `json` is one JSON object per line (as
docker prints `{{json .}}`), `table` the default table, anything else docker's Go template
subset (imagetool.gotemplate); `inspect -f` applies the template to each document."""

from __future__ import annotations

import json
from typing import Any

from imagetool.errors import ImagetoolError
from imagetool.gotemplate import TemplateError, format_rows, render


class FormatError(ImagetoolError, ValueError):
    pass


def print_rows(fmt: str, rows: list[dict[str, Any]], headers: dict[str, str]) -> None:
    """Print list rows with `fmt`: table, json, or a (table) Go template."""
    if fmt == "table":
        fmt = "table " + "\t".join(f"{{{{.{k}}}}}" for k in headers)
    try:
        lines = format_rows(fmt, rows, headers)
    except TemplateError as e:
        raise FormatError(f"--format: {e}") from None
    for line in lines:
        print(line)


def print_docs(docs: list[dict[str, Any]], fmt: str | None) -> None:
    """inspect's output: a JSON array, or the template once per document."""
    if not fmt:
        print(json.dumps(docs, indent=4))
        return
    if fmt == "json":
        fmt = "{{json .}}"
    try:
        for d in docs:
            print(render(fmt, d))
    except TemplateError as e:
        raise FormatError(f"--format: {e}") from None
