"""`--output type=oci|docker,dest=FILE[,name=REF]` (docker buildx's syntax): the built image
written as an archive through imagetool.archive's writers, atomically (a temp file beside
FILE, renamed)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

from imagetool.atomicfile import atomic_file
from imagetool.store import Store

from .errors import BuildError


@dataclass
class Output:
    """Where --output puts the built image: an archive of `type` at `dest`."""
    type: str                                   # "oci" or "docker"
    dest: str
    name: str | None = None                     # full store name for the archive, if any


OUTPUT_TYPES = ("oci", "docker")


def parse_output(text: str) -> Output:
    """`type=oci,dest=x.tar[,name=app:1]` (docker buildx's --output syntax, these keys)."""
    from imagetool import reference
    fields: dict[str, str] = {}
    for item in text.split(","):
        k, eq, v = item.partition("=")
        k = k.strip().lower()
        if not eq or not k:
            raise BuildError(f"--output {text!r}: want KEY=VALUE pairs like type=oci,dest=x.tar")
        if k in fields:
            raise BuildError(f"--output {text!r}: {k} given twice")
        fields[k] = v
    typ = fields.pop("type", None)
    if typ is None:
        raise BuildError(f"--output {text!r}: no type (want type=oci or type=docker)")
    if typ not in OUTPUT_TYPES:
        raise BuildError(f"--output type={typ} is not supported (want type=oci or type=docker, "
                         "each with dest=FILE.tar)")
    dest = fields.pop("dest", "")
    if not dest or dest == "-":
        raise BuildError(f"--output type={typ}: give dest=FILE (writing the archive to stdout "
                         "is not supported)")
    name = fields.pop("name", None)
    if fields:
        raise BuildError(f"--output type={typ}: unknown key(s) {', '.join(sorted(fields))} "
                         "(want type, dest, name)")
    if name is not None:
        try:
            name = reference.normalize(name)
        except reference.ReferenceError as e:
            raise BuildError(f"--output name={name}: {e}") from None
    directory = os.path.dirname(os.path.abspath(dest))
    if not os.path.isdir(directory):
        raise BuildError(f"--output dest={dest}: directory {directory} does not exist")
    if os.path.isdir(dest):
        raise BuildError(f"--output dest={dest} is a directory; want a .tar file")
    return Output(type=typ, dest=dest, name=name)


class _UnnamedIndex:
    """A TarWriter for save_oci of an image with no name: index.json entries without the
    name annotations save_oci would give them."""

    def __init__(self, tw: Any) -> None:
        self.tw = tw

    def bytes(self, name: str, data: bytes) -> None:
        if name == "index.json":
            from imagetool.archive.oci import CONTAINERD_NAME
            from imagetool.store import REF_NAME
            index = json.loads(data)
            for entry in index.get("manifests") or []:
                ann = {k: v for k, v in (entry.pop("annotations", None) or {}).items()
                       if k not in (REF_NAME, CONTAINERD_NAME)}
                if ann:
                    entry["annotations"] = ann
            data = json.dumps(index, separators=(",", ":")).encode()
        self.tw.bytes(name, data)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self.tw, attr)


def write_output(store: Store, output: Output, mdesc: dict[str, Any], tags: list[str]) -> str:
    """The image as an archive at output.dest, through a temp file beside it; returns the line
    to print."""
    from imagetool.archive.docker import save_docker
    from imagetool.archive.oci import save_oci
    from imagetool.archive.tarwriter import TarWriter
    name = output.name or (tags[0] if tags else None)
    desc = dict(mdesc)
    directory = os.path.dirname(os.path.abspath(output.dest))
    with atomic_file(output.dest) as f:
        tw = TarWriter(f)
        if output.type == "oci":
            save_oci(store, [(name or "", desc)],
                     tw if name else _UnnamedIndex(tw))  # type: ignore[arg-type]
        else:
            # a name that is no reference ("") gives RepoTags null: docker loads such an
            # image untagged
            save_docker(store, [(name or "", desc)], tw, spool_dir=directory)
        tw.close()
    return (f"--> wrote {output.type} archive {output.dest}"
            + (f" ({name})" if name else " (unnamed)"))
