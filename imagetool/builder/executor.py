"""The builder: a BuildPlan executed step by step into images in the store.

- Everything that can be checked is checked before anything runs: the Dockerfile and stage
  graph (plan.py), every step's variable expansion, context sources and .dockerignore, base
  and --from images present in the store, and features not supported yet
  (RUN --mount=type=ssh, --security=insecure), RUN --mount options and required secrets
  (run_mounts.py). Those errors name `Dockerfile:LINE`. An ADD of an http(s) URL downloads
  when its step's key is computed (copy_step.py), unless --checksum gives the key; an ADD of
  a git URL asks the remote which commit its ref names then (gitsource.py), and fetches that
  commit only when the step runs.
- A stage's rootfs is an overlay of its layers' snapshots (snapshots.py) with a fresh upper
  directory. RUN executes in a pyrunc container on that overlay (run_step.py); COPY/ADD write
  into the mounted overlay (copy_step.py); WORKDIR creates its directory. The upper directory
  then becomes the step's layer (diff.py).
- Metadata instructions edit the image config as docker does, with a history entry marked
  empty_layer. A stage whose base (or scratch) sets no PATH gets docker's default one in Env,
  as docker's builders (legacy and BuildKit) add it.
- The cache: each step's key (cachekey.py) chains from the base image's manifest digest; a
  filesystem step whose key is in <store root>/build-cache/ (one JSON file per key, written
  atomically) and whose layer blob is still in the store reuses that layer, so a no-change
  rebuild mounts nothing and starts no container.
- SOURCE_DATE_EPOCH (build arg or environment) clamps the mtimes in produced layers and sets
  every created timestamp, so two builds of the same inputs give the same digests.
- --output type=oci|docker,dest=FILE[,name=REF] (output.py) writes the built image as an
  archive; the image needs no tag in the store for that (the build holds its lease until the
  archive is written). The archive names the image `name=`, else the first -t, else nothing.
- --platform and FROM --platform take only the host's platform (builds run natively);
  --format docker names the same blobs with Docker's media types (at commit, so no cache
  input); --compression zstd writes +zstd layers, cached apart from gzip ones.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

from imagetool import convert, debuglog, layers, snapshots
from imagetool import mediatypes as mt
from imagetool.atomicfile import atomic_file
from imagetool.store import Store

from . import cachekey, meta_step, run_mounts
from . import dockerfile as df
from .copy_step import CopySteps
from .dockerignore import DockerIgnore
from .errors import BuildError, fail
from .expand import ExpandError
from .output import OUTPUT_TYPES, Output, parse_output, write_output
from .plan import SCRATCH, BuildPlan, Platform, Step, not_buildable, plan
from .run_mounts import Secret
from .run_step import RunSteps
from .state import StageState

DEFAULT_SHELL = ["/bin/sh", "-c"]
NOP = "/bin/sh -c #(nop) "
FS_STEPS = (df.Run, df.Copy, df.Add, df.Workdir)


@dataclass
class BuildOptions:
    context: str
    dockerfile: str | None = None          # default CONTEXT/Dockerfile
    tags: list[str] = field(default_factory=list)
    target: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)
    no_cache: bool = False
    output: Output | None = None
    platform: str | None = None            # os/arch[/variant]; only the host's (no emulation)
    format: str = "oci"                    # media types: "oci" or "docker" (buildah's --format)
    compression: str = "gzip"              # new layers: "gzip" or "zstd" (OCI types only)
    secrets: dict[str, Secret] = field(default_factory=dict)   # RUN --mount=type=secret
    network: str = "default"               # RUN's network unless it says: default|host|none
    labels: dict[str, str] = field(default_factory=dict)   # --label: on the final image only
    pull: str = "missing"                  # base images: pull if missing, always, or never


@dataclass
class Result:
    manifest: dict[str, Any]                    # the manifest descriptor
    config_digest: str
    steps: int = 0
    cached: int = 0
    containers: int = 0


FORMATS = ("oci", "docker")
NETWORKS = ("default", "host", "none")
PULLS = ("missing", "always", "never")
COMPRESSIONS = ("gzip", "zstd")


def check_options(opts: BuildOptions) -> None:
    """--platform/--format/--compression, checked before anything runs (the CLI calls this
    too, so a bad value is a usage error, not a failed build)."""
    if opts.platform:
        why = not_buildable(opts.platform)
        if why:
            raise BuildError(f"--platform {opts.platform}: {why}")
    if opts.pull not in PULLS:
        raise BuildError(f"--pull={opts.pull}: want missing, always or never")
    if opts.network not in NETWORKS:
        raise BuildError(f"--network {opts.network}: want default, host or none")
    if opts.format not in FORMATS:
        raise BuildError(f"--format {opts.format}: want oci or docker")
    if opts.compression not in COMPRESSIONS:
        raise BuildError(f"--compression {opts.compression}: want gzip or zstd")
    if opts.format == "docker" and opts.compression != "gzip":
        raise BuildError(f"--compression {opts.compression} needs --format oci: Docker's "
                         "media types have no zstd layer")


def _with_path(env: list[str]) -> list[str]:
    """A stage's starting Env: PATH appended (docker's default) when the base image (or
    scratch) sets none, as both of docker's builders do, so it is in the built config."""
    if any(e.partition("=")[0] == "PATH" for e in env):
        return env
    return [*env, f"PATH={convert.DEFAULT_PATH}"]


def _rfc3339(epoch: int | None) -> str:
    when = (_dt.datetime.fromtimestamp(epoch, _dt.UTC) if epoch is not None
            else _dt.datetime.now(_dt.UTC))
    return when.isoformat(timespec="seconds" if epoch is not None else "microseconds"
                          ).replace("+00:00", "Z")


class Builder(RunSteps, CopySteps):
    def __init__(self, store: Store, opts: BuildOptions,
                 out: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.opts = opts
        self.out = out or (lambda s: print(s, flush=True))
        self.context = os.path.abspath(opts.context)
        self.dockerfile_path = opts.dockerfile or os.path.join(self.context, "Dockerfile")
        self.cache_dir = os.path.join(store.root, "build-cache")
        self.runtime_root = os.path.join(store.root, "build-runtime")
        self.snaps = snapshots.Snapshots(store.root)
        epoch = opts.build_args.get("SOURCE_DATE_EPOCH") or os.environ.get("SOURCE_DATE_EPOCH")
        self.epoch = int(epoch) if epoch and epoch.strip().isdigit() else None
        self.containers = 0
        self.cached = 0
        self.steps = 0
        self.tmp: str | None = None

    # -- preparation (no side effects) ----------------------------------------------------------
    def prepare(self) -> tuple[BuildPlan, dict[int, list[Step]], dict[str, dict[str, Any]]]:
        check_options(self.opts)
        if not os.path.isdir(self.context):
            raise BuildError(f"build context {self.context} is not a directory")
        try:
            dfile = df.parse_file(self.dockerfile_path,
                                  filename=os.path.basename(self.dockerfile_path))
        except FileNotFoundError:
            raise BuildError(f"{self.dockerfile_path}: no such Dockerfile") from None
        host = Platform.host()
        p = plan(dfile, target=self.opts.target, build_args=self.opts.build_args,
                 build_platform=host, target_platform=self.opts.platform or host)
        for sp in p.needed():   # $BUILDPLATFORM / $TARGETPLATFORM are expanded by now
            why = sp.platform and not_buildable(sp.platform, host)
            if why:
                raise BuildError(f"{p.filename}:{sp.line}: FROM --platform={sp.platform}: "
                                 f"{why}")
        for w in p.warnings:   # the plan carries the Dockerfile's warnings with its own
            self.out(f"warning: {w}")
        self.ignore = DockerIgnore.load(self.context, self.dockerfile_path)
        p.check_context(self.context, self.ignore)
        images: dict[str, dict[str, Any]] = {}
        for st in p.needed():
            for src in [st.base, *st.sources]:
                if src.kind == "image" and src.ref not in images:
                    images[src.ref] = self._image(p, src.ref, src.line)
        if self.opts.format == "docker":
            self._check_docker_layers(p, images)
        steps: dict[int, list[Step]] = {}
        final_env: dict[int, dict[str, str]] = {}
        for st in p.needed():
            if st.base.kind == "image":
                conf = images[st.base.ref]["config"].get("config") or {}
                base_env = _with_path(list(conf.get("Env") or []))
                prelude = self._triggers(p, conf.get("OnBuild") or [], st.line)
            elif st.base.kind == "stage":
                assert st.base.stage is not None
                base_env, prelude = [f"{k}={v}" for k, v in final_env[st.base.stage].items()], []
            else:
                base_env, prelude = _with_path([]), []
            try:
                walked = list(p.walk(st.index, base_env, prelude))
            except (ExpandError, ValueError) as e:
                raise BuildError(str(e)) from None
            for s in walked:
                self._check_supported(p, s.expanded)
            steps[st.index] = walked
            final_env[st.index] = walked[-1].image_env if walked else dict(
                x.partition("=")[::2] for x in base_env)
        return p, steps, images

    def _image(self, p: BuildPlan, ref: str, line: int) -> dict[str, Any]:
        """A base or --from image: pulled when the store lacks it (--pull=missing, docker
        build's way), always (--pull=always), or never."""
        from imagetool.store.lookup import image_parts
        if self.opts.pull == "always":
            self._pull(p, ref, line)
        try:
            return image_parts(self.store, ref)
        except Exception as e:  # noqa: BLE001 - missing or broken: say which
            if self.opts.pull != "missing":
                raise BuildError(f"{p.filename}:{line}: image {ref} is not in the store "
                                 f"(pull or import it first): {e}") from None
        self._pull(p, ref, line)
        try:
            return image_parts(self.store, ref)
        except Exception as e:  # noqa: BLE001
            raise BuildError(f"{p.filename}:{line}: image {ref}: {e}") from None

    def _pull(self, p: BuildPlan, ref: str, line: int) -> None:
        from imagetool.pull import pull
        self.out(f"--> pulling {ref}")
        try:
            pull(self.store, ref, platform=str(p.target_platform), progress=False)
        except Exception as e:  # noqa: BLE001 - the registry's or the network's reason
            raise BuildError(f"{p.filename}:{line}: image {ref} is not in the store and "
                             f"cannot be pulled: {e}") from None

    def _check_docker_layers(self, p: BuildPlan, images: dict[str, dict[str, Any]]) -> None:
        """--format docker: the layers the image inherits from its base must have Docker
        names (a zstd base can't be one), said before anything runs."""
        st = p.stages[p.target]
        while st.base.kind == "stage":
            st = p.stages[st.base.stage or 0]
        if st.base.kind != "image":
            return
        for desc, _ in images[st.base.ref]["chain"]:
            try:
                layer_descriptor(desc, "docker")
            except BuildError as e:
                raise BuildError(f"{p.filename}:{st.line}: FROM {st.base.ref}: {e}") from None

    def _triggers(self, p: BuildPlan, triggers: list[str], line: int) -> list[df.Instruction]:
        if not triggers:
            return []
        try:
            return df.parse_instructions("\n".join(triggers) + "\n", p.filename,
                                         first_line=line)
        except df.DockerfileError as e:
            raise BuildError(f"ONBUILD trigger of the base image: {e}") from None

    def _check_supported(self, p: BuildPlan, ins: df.Instruction) -> None:
        def no(what: str) -> BuildError:
            return fail(p, ins, f"{ins.NAME}: {what} is not supported yet")
        if isinstance(ins, df.Run):
            if ins.security == "insecure":
                raise no("--security=insecure")
            problem = run_mounts.check(ins, context=self.context, ignore=self.ignore,
                                       secrets=self.opts.secrets)
            if problem:
                raise fail(p, ins, f"RUN {problem}")
        if isinstance(ins, (df.Copy, df.Add)):
            try:
                DockerIgnore(ins.exclude)
            except ValueError as e:
                raise fail(p, ins, f"{ins.NAME} --exclude: {e}") from None

    # -- the build -------------------------------------------------------------------------------
    def build(self) -> Result:
        p, steps, images = self.prepare()
        tags = []
        from imagetool import reference
        for t in self.opts.tags:
            try:
                tags.append(reference.normalize(t))
            except reference.ReferenceError as e:
                raise BuildError(f"-t {t}: {e}") from None
        states: dict[int, StageState] = {}
        os.makedirs(self.cache_dir, exist_ok=True)
        tmp_parent = os.path.join(self.store.root, "build-tmp")
        os.makedirs(tmp_parent, mode=0o700, exist_ok=True)
        self.tmp = tempfile.mkdtemp(prefix="b-", dir=tmp_parent)
        # What the build itself makes (WORKDIR, COPY's and ADD's directories) must not take
        # the caller's umask: with 077 they were 0700, other layers than a 022 caller's.
        umask = os.umask(0o022)
        try:
            with self.store.lease():
                for sp in p.needed():
                    base = (p.stages[sp.base.stage or 0].display_name()
                            if sp.base.kind == "stage" else sp.base.ref)
                    self.out(f"[stage {sp.display_name()}] FROM {base}")
                    states[sp.index] = self._stage(p, sp.index, steps[sp.index], images,
                                                   states)
                final = states[p.target]
                mdesc, cdigest = self._commit(final, tags)
                if self.opts.output is not None:  # inside the lease: blobs may be untagged
                    self.out(write_output(self.store, self.opts.output, mdesc, tags))
        finally:
            os.umask(umask)
            shutil.rmtree(self.tmp, ignore_errors=True)
        return Result(manifest=mdesc, config_digest=cdigest, steps=self.steps,
                      cached=self.cached, containers=self.containers)

    def _start_state(self, p: BuildPlan, index: int, images: dict[str, dict[str, Any]],
                     states: dict[int, StageState]) -> StageState:
        sp = p.stages[index]
        plat = str(p.target_platform)
        if sp.base.kind == "stage":
            prev = states[sp.base.stage or 0]
            return StageState(chain=list(prev.chain), config=json.loads(json.dumps(prev.config)),
                              key=prev.key, shell=list(prev.shell), env=dict(prev.env))
        if sp.base.kind == "image":
            parts = images[sp.base.ref]
            config = json.loads(json.dumps(parts["config"]))
            conf = config.setdefault("config", {})
            conf.pop("OnBuild", None)   # triggers run in this build; not inherited
            conf["Env"] = _with_path(list(conf.get("Env") or []))
            return StageState(chain=list(parts["chain"]), config=config,
                              key=cachekey.base_key(sp.base.ref,
                                                    digest=parts["manifest_desc"]["digest"],
                                                    platform=plat),
                              shell=list(conf.get("Shell") or DEFAULT_SHELL),
                              env=dict(e.partition("=")[::2] for e in conf.get("Env") or []))
        from imagetool.importer import host_platform
        env = _with_path([])
        config = {**host_platform(), "config": {"Env": env},
                  "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
        return StageState(chain=[], config=config, key=cachekey.base_key(SCRATCH, platform=plat),
                          shell=list(DEFAULT_SHELL), env=dict(e.partition("=")[::2] for e in env))

    def _stage(self, p: BuildPlan, index: int, steps: list[Step],
               images: dict[str, dict[str, Any]], states: dict[int, StageState]) -> StageState:
        state = self._start_state(p, index, images, states)
        total = len(steps)
        for n, step in enumerate(steps, 1):
            self.steps += 1
            ins = step.expanded
            self.out(f"STEP {n}/{total}: {step.instruction.original.strip()}")
            from_keys = []
            for src in step.sources:
                if src.kind == "stage":
                    from_keys.append(states[src.stage or 0].key)
                elif src.kind == "image":
                    from_keys.append(images[src.ref]["manifest_desc"]["digest"])
            sources = None
            extra: dict[str, Any] = {"epoch": self.epoch}
            if isinstance(ins, (df.Copy, df.Add)):
                sources = cachekey.sources_digest(ins, self.context, ignore=self.ignore,
                                                  filename=p.filename)
                extra.update(self._copy_key_extra(p, step))
            elif isinstance(ins, df.Run):   # context files it bind-mounts, by content
                sources = run_mounts.context_digest(ins, self.context, self.ignore, p.filename)
                if self._run_network(ins) == "none" and ins.network != "none":
                    extra["network"] = "none"   # --network none for the build: not the same run
            key = cachekey.step_key(state.key, ins,
                                    args=step.args if isinstance(ins, df.Run) else None,
                                    sources=sources, from_keys=from_keys,
                                    platform=str(p.target_platform),
                                    extra=extra)
            state.key = key
            if isinstance(ins, FS_STEPS):
                self._fs_step(p, state, step, key, images, states)
            else:
                # metadata steps are cached only for their timestamp: an unchanged rebuild
                # makes the same config, so the same image digest
                rec = self._cache_get(key)
                if rec is None:
                    rec = {"layer": None, "created": _rfc3339(self.epoch)}
                    self._cache_put(key, rec)
                self._meta_step(p, state, step, rec["created"])
        return state

    # -- metadata steps -------------------------------------------------------------------------
    def _history(self, state: StageState, created_by: str, empty: bool,
                 created: str | None = None) -> None:
        h: dict[str, Any] = {"created": created or _rfc3339(self.epoch),
                             "created_by": created_by}
        if empty:
            h["empty_layer"] = True
        h["comment"] = "imagetool build"
        state.config.setdefault("history", []).append(h)

    def _meta_step(self, p: BuildPlan, state: StageState, step: Step, created: str) -> None:
        self._history(state, NOP + meta_step.apply(p, state, step), True, created)

    # -- filesystem steps -----------------------------------------------------------------------
    def _cache_path(self, key: str) -> str:
        """The record of `key` for this build's layer compression: a zstd build stores other
        layer blobs than a gzip one for the same step, so it keeps its own records (gzip's
        keep their old names, so existing caches stay valid). --format needs no key: it only
        changes the manifest's media types, made at commit."""
        name = key.split(":", 1)[1]
        if self.opts.compression != "gzip":
            name += "-" + self.opts.compression
        return os.path.join(self.cache_dir, name + ".json")

    def _cache_get(self, key: str) -> dict[str, Any] | None:
        if self.opts.no_cache:
            return None
        try:
            with open(self._cache_path(key)) as f:
                rec = json.load(f)
        except (OSError, ValueError):
            debuglog.debug("build", "cache miss %s: no record", key)
            return None
        layer = rec.get("layer")
        if layer is not None and not self.store.has_blob(layer["digest"]):
            debuglog.debug("build", "cache miss %s: layer %s is gone", key, layer["digest"])
            return None
        debuglog.debug("build", "cache hit %s", key)
        return rec

    def _cache_put(self, key: str, rec: dict[str, Any]) -> None:
        path = self._cache_path(key)
        with atomic_file(path, text=True, durable=False) as f:
            json.dump(rec, f)

    def _fs_step(self, p: BuildPlan, state: StageState, step: Step, key: str,
                 images: dict[str, dict[str, Any]], states: dict[int, StageState]) -> None:
        ins = step.expanded
        conf = state.config.setdefault("config", {})
        if isinstance(ins, df.Workdir):
            wd = ins.path
            if not wd.startswith("/"):
                wd = os.path.join(conf.get("WorkingDir") or "/", wd)
            conf["WorkingDir"] = os.path.normpath(wd)
            text = NOP + "WORKDIR " + conf["WorkingDir"]
        elif isinstance(ins, df.Run):
            text = "RUN " + " ".join(self._run_argv(ins, state))
        else:
            ins = cast(df.FileTransfer, ins)  # COPY or ADD: the only instructions left
            srcs = " ".join([*ins.sources, *(f"<<{h.name}" for h in ins.heredocs)])
            text = f"{ins.NAME} {srcs} {ins.dest}"
            if isinstance(ins, df.Copy) and ins.from_stage:
                text = f"{ins.NAME} --from={ins.from_stage} {srcs} {ins.dest}"
            text = NOP + text
        rec = self._cache_get(key)
        if rec is not None:
            self.cached += 1
            self.out(f"--> Using cache {key}")
        else:
            rec = self._execute(p, state, step, images, states)
            self._cache_put(key, rec)
        if rec.get("layer") is not None:
            state.chain.append((rec["layer"], rec["diff_id"]))
            state.config.setdefault("rootfs", {"type": "layers"}).setdefault(
                "diff_ids", []).append(rec["diff_id"])
        self._history(state, text, rec.get("layer") is None, rec.get("created"))

    def _run_argv(self, ins: df.Run, state: StageState) -> list[str]:
        return ins.argv(state.shell)[0]

    @contextlib.contextmanager
    def _mounted(self, chain: list[tuple[dict[str, Any], str]]) -> Iterator[tuple[str, str]]:
        """(merged rootfs, upper dir) of an overlay over `chain`, unmounted and removed at
        the end; the upper dir is read inside the block."""
        assert self.tmp is not None
        d = tempfile.mkdtemp(prefix="m-", dir=self.tmp)
        merged = os.path.join(d, "bundle", "rootfs")
        upper, work = os.path.join(d, "upper"), os.path.join(d, "work")
        os.makedirs(merged)
        os.chmod(os.path.join(d, "bundle"), 0o700)
        os.mkdir(upper, 0o755)
        os.mkdir(work, 0o700)
        if chain:
            lowers = self.snaps.ensure(self.store, chain)
        else:
            empty = os.path.join(d, "empty")
            os.mkdir(empty, 0o755)
            lowers = [empty]
        snapshots.mount_overlay(lowers, upper, work, merged)
        try:
            yield merged, upper
        finally:
            try:
                snapshots.unmount(merged)
            finally:
                if not snapshots.is_mountpoint(merged):
                    shutil.rmtree(d, ignore_errors=True)

    def _execute(self, p: BuildPlan, state: StageState, step: Step,
                 images: dict[str, dict[str, Any]], states: dict[int, StageState]
                 ) -> dict[str, Any]:
        ins = step.expanded
        conf = state.config.get("config") or {}
        with self._mounted(state.chain) as (merged, upper):
            try:
                if isinstance(ins, df.Workdir):
                    # BuildKit makes WORKDIR (and its missing parents) as the current USER
                    user = conf.get("User") or ""
                    try:
                        owner = self._owner(merged, user, "USER") if user else None
                    except BuildError:
                        owner = None  # an unknown name: BuildKit makes them as root
                    self._mkdir(merged, conf["WorkingDir"], owner)
                elif isinstance(ins, df.Run):
                    self._run(p, state, step, merged, images, states)
                else:
                    self._copy(p, state, step, merged, images, states)
            except (layers.LayerError, convert.ConvertError, OSError) as e:
                from imagetool.rootless.paths import unmapped_hint
                raise fail(p, step.instruction,
                           f"{ins.NAME} failed: {e}{unmapped_hint(e)}") from None
            if not os.listdir(upper):
                return {"layer": None, "created": _rfc3339(self.epoch)}
            from imagetool.layer.generate import write_layer
            desc, diff_id, _ = write_layer(self.store, upper, epoch=self.epoch,
                                           compression=self.opts.compression)
        return {"layer": desc, "diff_id": diff_id, "created": _rfc3339(self.epoch)}

    @staticmethod
    def _mkdir(root: str, path: str, owner: tuple[int, int] | None = None) -> str:
        """The directory `path` in the rootfs, made with its missing parents (0755), which
        `owner` then owns; an existing one is left as it is."""
        parts = layers.split_name(path.lstrip("/"), "rootfs", "directory")
        res = layers.Resolver(root, "rootfs")
        rel = res.directory(parts, True, path)
        if owner is not None and owner != (0, 0):
            for made in res.implicit:
                os.chown(res.host(made), *owner)
        return os.path.join(root, rel) if rel else root

    # -- the image ------------------------------------------------------------------------------
    def _commit(self, state: StageState, tags: list[str]) -> tuple[dict[str, Any], str]:
        config = state.config
        hist = config.get("history") or []
        config["created"] = hist[-1]["created"] if hist else _rfc3339(self.epoch)
        config["rootfs"] = {"type": "layers", "diff_ids": [d for _, d in state.chain]}
        conf = config.get("config") or {}
        if self.opts.labels:   # docker build --label: the built image's, after the Dockerfile's
            conf["Labels"] = {**(conf.get("Labels") or {}), **self.opts.labels}
        config["config"] = {k: v for k, v in conf.items() if v is not None}
        config.pop("container_config", None)
        config.pop("container", None)
        docker = self.opts.format == "docker"
        manifest_type, config_type = ((mt.DOCKER_MANIFEST, mt.DOCKER_CONFIG) if docker
                                      else (mt.OCI_MANIFEST, mt.OCI_CONFIG))
        cdesc = self.store.put_json(config, config_type)
        manifest = {"schemaVersion": 2, "mediaType": manifest_type, "config": cdesc,
                    "layers": [layer_descriptor(desc, self.opts.format)
                               for desc, _ in state.chain]}
        mdesc = self.store.put_json(manifest, manifest_type)
        plat = {"architecture": config.get("architecture"), "os": config.get("os")}
        if config.get("variant"):
            plat["variant"] = config["variant"]
        mdesc["platform"] = plat
        if tags:
            self.store.set_images([(t, mdesc) for t in tags])
        return mdesc, cdesc["digest"]


# The same blob under the other family's name: (OCI type, Docker type).
_LAYER_TWINS = ((mt.OCI_LAYER_GZIP, mt.DOCKER_LAYER_GZIP),
                (mt.OCI_LAYER_ND_GZIP, mt.DOCKER_LAYER_FOREIGN))


def layer_descriptor(desc: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A layer's descriptor in a manifest of `fmt` ("oci"/"docker"): the blob is the same
    bytes, only its media type is named as that family names it, so a base image pulled in
    Docker's types gives no mixed manifest. Docker's types have no zstd or uncompressed
    layer: BuildError (check_layers says so before the build runs)."""
    kind = desc.get("mediaType", mt.OCI_LAYER_GZIP)
    if fmt == "docker":
        to = dict(_LAYER_TWINS).get(kind, kind)
        if not to.startswith("application/vnd.docker."):
            raise BuildError(f"--format docker: layer {desc.get('digest')} is {kind}, which "
                             "Docker's media types cannot name (use --format oci)")
        # Docker's schema 2 descriptors carry mediaType, size, digest and urls only
        out = {k: v for k, v in desc.items() if k in ("size", "digest", "urls")}
        return {"mediaType": to, **out}
    to = {d: o for o, d in _LAYER_TWINS}.get(kind, kind)
    return dict(desc, mediaType=to)


def build(store: Store, opts: BuildOptions, out: Callable[[str], None] | None = None) -> Result:
    started = time.monotonic()
    b = Builder(store, opts, out)
    try:
        res = b.build()
    except df.DockerfileError as e:
        raise BuildError(str(e)) from None
    b.out(f"--> built {res.manifest['digest']} in {time.monotonic() - started:.2f}s "
          f"({res.steps} steps, {res.cached} cached, {res.containers} containers)")
    return res


__all__ = ["BuildError", "BuildOptions", "Builder", "OUTPUT_TYPES", "Output", "Result", "build",
           "parse_output"]
