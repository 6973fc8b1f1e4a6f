"""Shared helpers of the Dockerfile parser tests."""

import textwrap

import pytest

from imagetool.builder import dockerfile as d
from imagetool.builder.dockerfile import DockerfileError, parse


def P(text: str, filename: str = "Dockerfile") -> d.Dockerfile:
    return parse(textwrap.dedent(text).lstrip("\n"), filename)


def only(df: d.Dockerfile, kind: type) -> list:
    return [i for i in df.instructions() if isinstance(i, kind)]


def err(text: str, filename: str = "Dockerfile") -> DockerfileError:
    with pytest.raises(DockerfileError) as ei:
        P(text, filename)
    return ei.value
