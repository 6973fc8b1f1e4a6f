"""`imagetool build --provenance`: an in-toto SLSA provenance (v0.2) statement for the built
image, attached the way BuildKit attaches it: the tag then names an OCI index holding the
image manifest and an attestation manifest (platform unknown/unknown, annotations
vnd.docker.reference.type=attestation-manifest and vnd.docker.reference.digest=<image>),
whose one layer (application/vnd.in-toto+json, annotation in-toto.io/predicate-type) is the
statement. `imagetool push` ships the index as it is; `attest` signs one in cosign's format.

Recorded: the builder, the Dockerfile's sha256, the target, platform and build args, the ids
(never the contents) of --secret mounts, and every base image with the digest it had in the
store. Base images come from the Dockerfile's FROM lines (ARG defaults and --build-arg
expanded; stage names, `scratch` and names not in the store are left out)."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform as host_platform
import re
from typing import Any

from imagetool import __version__
from imagetool import mediatypes as mt

STATEMENT_V01 = "https://in-toto.io/Statement/v0.1"
SLSA_V02 = "https://slsa.dev/provenance/v0.2"
INTOTO_LAYER = "application/vnd.in-toto+json"
BUILDER_ID = f"https://imagetool.invalid/builder@{__version__}"
BUILD_TYPE = "https://imagetool.invalid/build/dockerfile@v1"
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")


def _expand(text: str, env: dict[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        return env.get(name) or (m.group(2) or "")
    return _VAR.sub(sub, text)


def base_images(dockerfile: str, build_args: dict[str, str]) -> list[str]:
    """The image names the FROM lines use (stage references left out), in order."""
    lines, cur = [], ""
    for raw in dockerfile.splitlines():
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        lines.append(cur + s)
        cur = ""
    env: dict[str, str] = {}
    stages: set[str] = set()
    out: list[str] = []
    seen_from = False
    for ln in lines:
        word, _, rest = ln.partition(" ")
        if word.upper() == "ARG" and not seen_from:
            k, eq, v = rest.strip().partition("=")
            env[k] = build_args.get(k, v.strip("\"'") if eq else "")
        elif word.upper() == "FROM":
            seen_from = True
            parts = [p for p in rest.split() if not p.startswith("--")]
            if not parts:
                continue
            name = _expand(parts[0], env)
            if len(parts) >= 3 and parts[1].lower() == "as":
                stages.add(parts[2].lower())
            if name.lower() in stages or name == "scratch" or name in out:
                continue
            out.append(name)
    return out


def _materials(store: Any, names: list[str]) -> list[dict[str, Any]]:
    from imagetool import reference
    out = []
    for name in names:
        try:
            ref = reference.parse(name)
        except reference.ReferenceError:
            continue
        desc = store.get_image(str(ref))
        digest = ref.digest or (desc or {}).get("digest")
        if not digest:
            continue
        algo, _, hexd = digest.partition(":")
        out.append({"uri": f"pkg:docker/{ref.name}@{ref.tag or ref.digest}",
                    "digest": {algo: hexd}})
    return out


def statement(store: Any, opts: Any, image: dict[str, Any], started: str,
              finished: str) -> dict[str, Any]:
    """The provenance statement for `image` (a manifest descriptor) built with `opts`."""
    path = opts.dockerfile or os.path.join(opts.context, "Dockerfile")
    with open(path, "rb") as f:
        text = f.read()
    params: dict[str, Any] = {"frontend": "dockerfile.v0", "args": dict(opts.build_args)}
    if opts.target:
        params["target"] = opts.target
    if opts.platform:
        params["platform"] = opts.platform
    if opts.secrets:
        params["secrets"] = sorted(opts.secrets)  # ids only, never values
    algo, _, hexd = image["digest"].partition(":")
    return {"_type": STATEMENT_V01, "predicateType": SLSA_V02,
            "subject": [{"name": t, "digest": {algo: hexd}} for t in opts.tags]
            or [{"name": "_", "digest": {algo: hexd}}],
            "predicate": {
                "builder": {"id": BUILDER_ID},
                "buildType": BUILD_TYPE,
                "invocation": {
                    "configSource": {"entryPoint": os.path.basename(path),
                                     "digest": {"sha256": hashlib.sha256(text).hexdigest()}},
                    "parameters": params,
                    "environment": {"platform": f"linux/{host_platform.machine()}"}},
                "metadata": {"buildStartedOn": started, "buildFinishedOn": finished,
                             "completeness": {"parameters": True, "environment": True,
                                              "materials": False},
                             "reproducible": False},
                "materials": _materials(store, base_images(text.decode(errors="replace"),
                                                           opts.build_args))}}


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def attach(store: Any, opts: Any, image: dict[str, Any], started: str) -> dict[str, Any]:
    """Store the statement and an index of [image, attestation]; point opts.tags at it.
    Returns the index descriptor."""
    stmt = statement(store, opts, image, started, now())
    body = json.dumps(stmt, separators=(",", ":")).encode()
    layer = {"mediaType": INTOTO_LAYER, "digest": store.put_bytes(body), "size": len(body),
             "annotations": {"in-toto.io/predicate-type": SLSA_V02}}
    config = store.put_json({"architecture": "unknown", "os": "unknown", "config": {},
                             "rootfs": {"type": "layers", "diff_ids": [layer["digest"]]}},
                            mt.OCI_CONFIG)
    att = store.put_json({"schemaVersion": 2, "mediaType": mt.OCI_MANIFEST, "config": config,
                          "layers": [layer]}, mt.OCI_MANIFEST)
    att["platform"] = {"architecture": "unknown", "os": "unknown"}
    att["annotations"] = {"vnd.docker.reference.digest": image["digest"],
                          "vnd.docker.reference.type": "attestation-manifest"}
    manifest = store.read_json(image)
    cfg = store.read_json(manifest["config"])
    entry = {"mediaType": image.get("mediaType", mt.OCI_MANIFEST), "digest": image["digest"],
             "size": image["size"],
             "platform": {k: cfg[k] for k in ("architecture", "os", "variant") if cfg.get(k)}}
    index = store.put_json({"schemaVersion": 2, "mediaType": mt.OCI_INDEX,
                            "manifests": [entry, att]}, mt.OCI_INDEX)
    from imagetool import reference
    store.set_images([(reference.normalize(t), index) for t in opts.tags])
    return index
