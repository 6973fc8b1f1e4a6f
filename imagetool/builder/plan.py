"""The build plan: a parsed Dockerfile as a graph of stages, pruned to what the target needs.

Docker's rules:

- Stages are numbered from 0 and may be named (`FROM image AS name`, names case-insensitive).
- `FROM <name>` builds on an earlier stage of that name; a name no earlier stage has is an image.
- `COPY --from=<x>` and `RUN --mount=from=<x>` take a stage name, a stage index, or an image;
  they may name any stage (also a later one), but not their own stage or one that depends on it.
- Only the target (`--target`, else the last stage) and the stages it needs are built.
- ARG scoping: ARGs before the first FROM are global and usable only in FROM lines; a stage that
  wants one declares it again (`ARG NAME` without a value takes the global value). An ARG in a
  stage is in scope from its line to the end of the stage. `--build-arg` overrides defaults
  (its value is not expanded). The platform args (BUILDPLATFORM, TARGETPLATFORM, TARGETOS,
  TARGETARCH, TARGETVARIANT, BUILDOS, BUILDARCH, BUILDVARIANT) are set automatically in the
  global scope; the proxy args (HTTP_PROXY, ...) reach RUN without a declaration and stay out of
  the cache key and history. A `--build-arg` no ARG of a built stage declares draws a warning.

`plan()` checks all of that before anything runs and raises DockerfileError
(`Dockerfile:LINE: message`). `BuildPlan.walk()` then gives, for one stage and its base
image's environment, each instruction with its arguments expanded and the ARG/ENV values in
scope, which is what the executor and the cache keys need.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..platform import Platform
from ..reference import ReferenceError
from ..reference import parse as parse_reference
from . import dockerfile as df
from .expand import Lexer, expand_instruction

PROXY_ARGS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "FTP_PROXY",
              "ftp_proxy", "NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy")
PLATFORM_ARGS = ("BUILDPLATFORM", "BUILDOS", "BUILDARCH", "BUILDVARIANT", "TARGETPLATFORM",
                 "TARGETOS", "TARGETARCH", "TARGETVARIANT")
#: Build args Docker/BuildKit understand without an ARG: never reported as unused.
BUILTIN_ARGS = frozenset(PROXY_ARGS + PLATFORM_ARGS + (
    "BUILDKIT_INLINE_CACHE", "BUILDKIT_MULTI_PLATFORM", "BUILDKIT_SYNTAX",
    "BUILDKIT_CACHE_MOUNT_NS", "BUILDKIT_CONTEXT_KEEP_GIT_DIR", "BUILDKIT_SANDBOX_HOSTNAME",
    "SOURCE_DATE_EPOCH"))
SCRATCH = "scratch"

def not_buildable(text: str, host: Platform | None = None) -> str | None:
    """Why `text` can't be built here (None if it can): builds run natively, there is no
    emulation (binfmt/qemu), so only the host's platform is accepted."""
    host = host or Platform.host()
    try:
        wanted = Platform.parse(text)
    except ValueError as e:
        return str(e)
    if wanted != host:
        return f"only the host's platform {host} can be built here (no emulation)"
    return None


def platform_args(build: Platform, target: Platform) -> dict[str, str]:
    return {
        "BUILDPLATFORM": str(build), "BUILDOS": build.os, "BUILDARCH": build.arch,
        "BUILDVARIANT": build.variant,
        "TARGETPLATFORM": str(target), "TARGETOS": target.os, "TARGETARCH": target.arch,
        "TARGETVARIANT": target.variant,
    }


@dataclass(kw_only=True)
class Source:
    """Where a COPY --from / RUN --mount from= / FROM reads: a stage, or an image."""

    kind: str                  # "stage" | "image" | "scratch"
    ref: str                   # as resolved: stage index (as text) or the image reference
    stage: int | None = None
    line: int = 0
    via: str = ""              # "FROM" | "COPY --from" | "RUN --mount"


@dataclass(kw_only=True)
class StagePlan:
    index: int
    name: str | None
    line: int
    base: Source                         # what FROM resolved to
    platform: str | None                 # FROM --platform, expanded (None: the target's)
    instructions: list[df.Instruction]
    sources: list[Source] = field(default_factory=list)   # COPY --from / mounts, file order
    deps: list[int] = field(default_factory=list)         # stages this one needs, sorted
    needed: bool = False

    def display_name(self) -> str:
        return self.name if self.name is not None else f"stage-{self.index}"

    def source_for(self, ins: df.Instruction) -> list[Source]:
        """The resolved sources of one COPY/RUN of this stage."""
        return [s for s in self.sources if s.line == ins.line]

    def images(self) -> list[str]:
        """Every image this stage reads (its base and its --from images), de-duplicated."""
        out = []
        for s in [self.base, *self.sources]:
            if s.kind == "image" and s.ref not in out:
                out.append(s.ref)
        return out


@dataclass(kw_only=True)
class Step:
    """One instruction of a stage, ready to execute."""

    instruction: df.Instruction          # as parsed
    expanded: df.Instruction             # with Docker's substitution applied
    env: dict[str, str]                  # what RUN sees: image ENV + ARGs in scope (+ proxies)
    args: dict[str, str]                 # ARG values in scope (no proxies): cache-key input
    image_env: dict[str, str]            # the image config's Env after this step
    sources: list[Source] = field(default_factory=list)


@dataclass(kw_only=True)
class BuildPlan:
    dockerfile: df.Dockerfile
    stages: list[StagePlan]
    target: int
    order: list[int]                     # the needed stages, dependencies first
    global_args: dict[str, str]          # global scope after overrides (FROM lines see these)
    build_args: dict[str, str]
    build_platform: Platform
    target_platform: Platform
    warnings: list[str] = field(default_factory=list)

    @property
    def filename(self) -> str:
        return self.dockerfile.filename

    def needed(self) -> list[StagePlan]:
        return [self.stages[i] for i in self.order]

    def stage(self, name_or_index: str | int) -> StagePlan:
        st = self.dockerfile.stage(name_or_index)
        if st is None:
            raise KeyError(name_or_index)
        return self.stages[st.index]

    def images(self) -> list[str]:
        """Images the build pulls (bases and --from images of the needed stages)."""
        out: list[str] = []
        for st in self.needed():
            for ref in st.images():
                if ref not in out:
                    out.append(ref)
        return out

    def walk(self, stage: int | str, base_env: Mapping[str, str] | Iterable[str] = (),
             prelude: Iterable[df.Instruction] = ()) -> Iterator[Step]:
        """The stage's instructions in order, expanded with ARG/ENV scoping applied.

        `base_env` is the base image's Env (a mapping or `K=V` strings); `prelude` is the base
        image's ONBUILD triggers, parsed (they run first, as Docker runs them right after FROM).
        """
        sp = self.stage(stage)
        image_env = _env_dict(base_env)
        args: dict[str, str] = {}
        order: dict[str, str] = dict(image_env)   # the builder's view: last ARG/ENV wins
        declared: set[str] = set()
        for ins in [*prelude, *sp.instructions]:
            run_env = dict(order)
            for k in PROXY_ARGS:
                if k in self.build_args and k not in declared:
                    run_env.setdefault(k, self.build_args[k])
            if isinstance(ins, df.Arg):
                defs = []
                for a in ins.args:
                    declared.add(a.name)
                    value = self._arg_value(a, order)
                    if value is not None:
                        args[a.name] = value
                        order[a.name] = value
                    defs.append(df.ArgDef(name=a.name, default=value))
                expanded: df.Instruction = dataclasses.replace(ins, args=defs)
            else:
                expanded = expand_instruction(ins, order, escape=self.dockerfile.escape,
                                              filename=self.filename)
                if isinstance(expanded, df.Env):
                    for p in expanded.pairs:
                        image_env[p.key] = p.value
                        order[p.key] = p.value
            yield Step(instruction=ins, expanded=expanded, env=run_env,
                       args={k: v for k, v in args.items() if k not in PROXY_ARGS},
                       image_env=dict(image_env), sources=sp.source_for(ins))

    def check_context(self, context_dir: str | os.PathLike[str] | None,
                      ignore: Any = None) -> None:
        """Before anything runs: every context source a needed COPY/ADD names (without
        variables, URLs or --from) must exist and not be .dockerignore'd."""
        from .buildcontext import SourceError, check_sources

        for st in self.needed():
            for ins in st.instructions:
                if not isinstance(ins, (df.Copy, df.Add)):
                    continue
                if isinstance(ins, df.Copy) and ins.from_stage:
                    continue
                local = [s for s in ins.sources if "$" not in s and not (
                    isinstance(ins, df.Add) and (df.is_url(s) or df.is_git_url(s)))]
                if not local:
                    continue
                if context_dir is None:
                    raise _fail(self.dockerfile, f"{ins.NAME} {' '.join(local)}: the build "
                                "has no context to copy from", ins.line)
                try:
                    check_sources(context_dir, local, ignore=ignore)
                except SourceError as e:
                    raise _fail(self.dockerfile, f"{ins.NAME} failed: {e}", ins.line) from None

    def _arg_value(self, a: df.ArgDef, env: Mapping[str, str]) -> str | None:
        if a.name in self.build_args:
            return self.build_args[a.name]
        if a.default is not None:
            return Lexer(self.dockerfile.escape).word(a.default, env)
        return self.global_args.get(a.name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable, for `imagetool build --print-plan` and the cache."""
        return {
            "dockerfile": self.dockerfile.to_dict(),
            "target": self.target,
            "order": list(self.order),
            "global_args": dict(self.global_args),
            "build_args": dict(self.build_args),
            "build_platform": str(self.build_platform),
            "target_platform": str(self.target_platform),
            "stages": [{
                "index": s.index, "name": s.name, "line": s.line, "needed": s.needed,
                "base": dataclasses.asdict(s.base), "platform": s.platform,
                "deps": list(s.deps), "sources": [dataclasses.asdict(x) for x in s.sources],
            } for s in self.stages],
            "warnings": list(self.warnings),
        }


def _env_dict(env: Mapping[str, str] | Iterable[str]) -> dict[str, str]:
    if isinstance(env, Mapping):
        return dict(env)
    out: dict[str, str] = {}
    for item in env:
        k, _, v = item.partition("=")
        out[k] = v
    return out


def _fail(dockerfile: df.Dockerfile, message: str, line: int | None) -> df.DockerfileError:
    return df.DockerfileError(message, dockerfile.filename, line)


def _global_scope(dockerfile: df.Dockerfile, build_args: Mapping[str, str],
                  auto: Mapping[str, str]) -> dict[str, str]:
    scope = dict(auto)
    lexer = Lexer(dockerfile.escape)
    for ins in dockerfile.meta_args:
        for a in ins.args:
            if a.name in build_args:
                scope[a.name] = build_args[a.name]
            elif a.default is not None:
                try:
                    scope[a.name] = lexer.word(a.default, scope)
                except ValueError as e:
                    raise _fail(dockerfile, f"ARG: {e}", ins.line) from None
    return scope


def _resolve_ref(dockerfile: df.Dockerfile, value: str, via: str, line: int) -> Source:
    """A COPY --from / mount from= value -> a stage or an image (Docker's rules)."""
    if value.isdigit():
        i = int(value)
        if i >= len(dockerfile.stages):
            raise _fail(dockerfile, f"{via}={value}: invalid stage index {i} (the Dockerfile "
                        f"has {len(dockerfile.stages)} stages, numbered from 0)", line)
        return Source(kind="stage", ref=str(i), stage=i, line=line, via=via)
    st = dockerfile.stage(value)
    if st is not None:
        return Source(kind="stage", ref=str(st.index), stage=st.index, line=line, via=via)
    names = [s.name for s in dockerfile.stages if s.name]
    try:
        ref = parse_reference(value)
    except ReferenceError as e:
        known = ", ".join(names) or "none"
        raise _fail(dockerfile, f"{via}={value}: no stage named {value!r} (stages: {known}), "
                    f"and not an image reference either ({e})", line) from None
    bare = not any(c in value for c in ":/@")
    close = difflib.get_close_matches(value.lower(), names, n=1, cutoff=0.75)
    if bare and close:
        raise _fail(dockerfile, f"{via}={value}: no stage named {value!r}; did you mean "
                    f"{close[0]!r}? (to copy from the image {value}, write it with a tag: "
                    f"{value}:latest)", line)
    return Source(kind="image", ref=str(ref), line=line, via=via)


def plan(dockerfile: df.Dockerfile, *, target: str | None = None,
         build_args: Mapping[str, str] | None = None,
         build_platform: Platform | str | None = None,
         target_platform: Platform | str | None = None) -> BuildPlan:
    """Check the stage graph and work out what to build for `target` (default: last stage)."""
    build_args = dict(build_args or {})
    bp = (Platform.parse(build_platform) if isinstance(build_platform, str)
          else build_platform or Platform.host())
    tp = (Platform.parse(target_platform) if isinstance(target_platform, str)
          else target_platform or bp)
    auto = platform_args(bp, tp)
    scope = _global_scope(dockerfile, build_args, auto)
    lexer = Lexer(dockerfile.escape)
    warnings = list(dockerfile.warnings)
    consumed: set[str] = set()
    for meta in dockerfile.meta_args:
        consumed.update(a.name for a in meta.args)

    stages: list[StagePlan] = []
    for st in dockerfile.stages:
        header = st.header
        used: set[str] = set()
        hdr = expand_instruction(header, scope, escape=dockerfile.escape,
                                 filename=dockerfile.filename, used=used)
        assert isinstance(hdr, df.From)
        image = hdr.image
        if hdr.platform is not None:
            try:
                Platform.parse(hdr.platform)
            except ValueError as e:
                raise _fail(dockerfile, f"FROM --platform: {e}", header.line) from None
        base: Source
        earlier = dockerfile.stage(image) if not image.isdigit() else None
        if image.lower() == SCRATCH:
            base = Source(kind="scratch", ref=SCRATCH, line=header.line, via="FROM")
        elif earlier is not None and earlier.index < st.index:
            base = Source(kind="stage", ref=str(earlier.index), stage=earlier.index,
                          line=header.line, via="FROM")
        else:
            if earlier is not None:
                warnings.append(f"{dockerfile.filename}:{header.line}: FROM {image}: stage "
                                f"{image!r} is defined later (line {earlier.line}); FROM only "
                                "sees earlier stages, so this is the image of that name")
            try:
                ref = parse_reference(image)
            except ReferenceError as e:
                raise _fail(dockerfile, f"FROM {image}: {e}", header.line) from None
            base = Source(kind="image", ref=str(ref), line=header.line, via="FROM")
        sp = StagePlan(index=st.index, name=st.name, line=header.line, base=base,
                       platform=hdr.platform, instructions=list(st.instructions))
        for ins in st.instructions:
            refs: list[tuple[str, str]] = []
            if isinstance(ins, df.Copy) and ins.from_stage:
                refs.append(("COPY --from", ins.from_stage))
            if isinstance(ins, df.Run):
                refs.extend(("RUN --mount from", m.from_stage) for m in ins.mounts
                            if m.from_stage)
            for via, raw in refs:
                try:
                    value = lexer.word(raw, scope)
                except ValueError as e:
                    raise _fail(dockerfile, f"{via}: {e}", ins.line) from None
                src = _resolve_ref(dockerfile, value, via, ins.line)
                if src.stage == st.index:
                    raise _fail(dockerfile, f"circular dependency detected on stage: "
                                f"{st.display_name()} ({via}={value} names its own stage)",
                                ins.line)
                sp.sources.append(src)
        deps = {s.stage for s in [base, *sp.sources] if s.stage is not None}
        sp.deps = sorted(deps)
        stages.append(sp)

    _check_cycles(dockerfile, stages)

    if target is None or target == "":
        tgt = len(stages) - 1
    else:
        found = dockerfile.stage(target) if not str(target).isdigit() else None
        if found is None:
            names = [s.name for s in dockerfile.stages if s.name]
            hint = difflib.get_close_matches(str(target).lower(), names, n=1)
            extra = f"; did you mean {hint[0]!r}?" if hint else ""
            raise df.DockerfileError(
                f"target stage {target!r} could not be found (stages: "
                f"{', '.join(names) or 'none named'}){extra}", dockerfile.filename)
        tgt = found.index

    order: list[int] = []
    seen: set[int] = set()

    def visit(i: int) -> None:
        if i in seen:
            return
        seen.add(i)
        for d in stages[i].deps:
            visit(d)
        order.append(i)

    visit(tgt)
    for i in order:
        stages[i].needed = True
        for ins in stages[i].instructions:
            if isinstance(ins, df.Arg):
                consumed.update(a.name for a in ins.args)
    unused = sorted(k for k in build_args if k not in consumed and k not in BUILTIN_ARGS)
    if unused:
        warnings.append(f"one or more build-args {unused} were not consumed (no ARG of a built "
                        "stage declares them)")
    return BuildPlan(dockerfile=dockerfile, stages=stages, target=tgt, order=order,
                     global_args=scope, build_args=build_args, build_platform=bp,
                     target_platform=tp, warnings=warnings)


def _check_cycles(dockerfile: df.Dockerfile, stages: list[StagePlan]) -> None:
    state: dict[int, int] = {}   # 1 = on the stack, 2 = done

    def visit(i: int, path: list[int]) -> None:
        state[i] = 1
        for d in stages[i].deps:
            if state.get(d) == 1:
                cycle = [*path, i]
                cycle = cycle[cycle.index(d):] + [d]
                names = " -> ".join(stages[j].display_name() for j in cycle)
                via = [stages[i].base, *stages[i].sources]
                line = next(s.line for s in via if s.stage == d)
                raise _fail(dockerfile, f"circular dependency detected on stage: "
                            f"{stages[d].display_name()} ({names})", line)
            if state.get(d) is None:
                visit(d, path + [i])
        state[i] = 2

    for i in range(len(stages)):
        if i not in state:
            visit(i, [])
