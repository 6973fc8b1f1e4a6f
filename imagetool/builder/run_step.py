"""RUN steps: the step's command in a pyrunc container on the stage's mounted overlay.

The runtime is used as a library (the init is the builder's child): the stage's env (image
ENV + ARGs in scope), user, workdir and shell; host network unless `--network=none` (then an
empty network namespace: loopback only). `--mount`s are made ready by run_mounts.py; a
`RUN <<EOF` script that starts with `#!` is bound read-only at /dev/pipes/EOF (a tmpfs: never
in the layer), as BuildKit does. Mount points the runtime had to create, and the parent
directories overlayfs copied up only to hold them, are removed again so they don't end up in
the layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import tempfile
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from imagetool import runspec, snapshots
from imagetool.store import Store

from . import dockerfile as df
from . import run_mounts
from .dockerignore import DockerIgnore
from .errors import BuildError, fail
from .plan import BuildPlan, Source, Step
from .state import StageState


class RunSteps:
    """Mixin for Builder: RUN."""

    runtime_root: str
    containers: int
    store: Store
    context: str
    ignore: DockerIgnore
    opts: Any
    tmp: str | None

    out: Callable[[str], None]

    if TYPE_CHECKING:  # the Builder this mixes into provides them
        def _mounted(self, chain: list[tuple[dict[str, Any], str]]
                     ) -> contextlib.AbstractContextManager[tuple[str, str]]: ...

        @staticmethod
        def _mkdir(root: str, path: str, owner: tuple[int, int] | None = None) -> str: ...

    # -- RUN ------------------------------------------------------------------------------------
    def _run(self, p: BuildPlan, state: StageState, step: Step, merged: str,
             images: dict[str, dict[str, Any]] | None = None,
             states: dict[int, StageState] | None = None) -> None:
        ins = step.expanded
        assert isinstance(ins, df.Run)
        conf = state.config.get("config") or {}
        argv, files = ins.argv(state.shell)
        env = dict(step.env)
        wd = conf.get("WorkingDir") or "/"
        self._mkdir(merged, wd)
        with contextlib.ExitStack() as stack:
            try:
                extra = run_mounts.prepare(stack, ins, self._mount_context(
                    stack, step, wd, images or {}, states or {}))
            except (run_mounts.MountError, OSError, snapshots.SnapshotError) as e:
                raise fail(p, step.instruction, f"RUN --mount: {e}") from None
            env.update(extra.env)
            network = self._run_network(ins)
            mounts = [] if network == "none" else _host_etc(merged)
            if files:
                mounts.append({"destination": "/dev/pipes", "type": "bind",
                               "source": _pipes(self._tmp(), files),
                               "options": ["rbind", "ro", "nosuid", "nodev"]})
            mounts.extend(extra.mounts)
            spec = runspec.build(
                {"config": {"Env": [f"{k}={v}" for k, v in env.items()]}},
                runspec.RunOptions(
                    entrypoint=[], cmd=argv, workdir=wd, hostname="buildkitsandbox",
                    user=conf.get("User") or "", mounts=mounts,
                    network=runspec.NETWORK_PRIVATE if network == "none"
                    else runspec.NETWORK_HOST), merged)
            dests = [m["destination"] for m in spec["mounts"]]
            stubs = _missing_mountpoints(merged, dests)
            upper = run_mounts.upper_of(merged)
            before = run_mounts.upper_entries(upper)
            parents = run_mounts.parent_dirs(merged, stubs)
            code = self._container(p, step, merged, spec)
            _remove_stubs(merged, stubs, dests)
            if upper is not None:
                run_mounts.prune_copied_up(upper, parents, before)
        if code != 0:
            raise fail(p, step.instruction, f"RUN: process {json.dumps(argv)} did not "
                        f"complete successfully: exit code: {code if code >= 0 else 128 - code}")

    def _tmp(self) -> str:
        tmp = getattr(self, "tmp", None)
        assert tmp is not None
        return tempfile.mkdtemp(prefix="r-", dir=tmp)

    def _mount_context(self, stack: contextlib.ExitStack, step: Step, wd: str,
                       images: dict[str, dict[str, Any]], states: dict[int, StageState]
                       ) -> run_mounts.Context:
        def from_root(src: Source) -> str:
            if src.kind == "stage":
                chain = states[src.stage or 0].chain
            elif src.kind == "image":
                chain = images[src.ref]["chain"]
            else:
                chain = []
            merged, _ = stack.enter_context(self._mounted(chain))
            return merged
        return run_mounts.Context(
            workdir=wd, tmp=self._tmp(), store_root=self.store.root, context=self.context,
            ignore=self.ignore, secrets=dict(self.opts.secrets), sources=list(step.sources),
            from_root=from_root)

    def _run_network(self, ins: df.Run) -> str:
        """RUN --network=none|host as written, else the build's --network (as docker build:
        `default` means the build's own choice); default is the host's network here."""
        if ins.network in ("none", "host"):
            return ins.network
        return getattr(self.opts, "network", "default") or "default"

    def _container(self, p: BuildPlan, step: Step, merged: str, spec: dict[str, Any]) -> int:
        """Run the spec's process to its end in a container on `merged`: its exit code."""
        from imagetool.rootless.paths import rootless
        from runtime.container import Container
        from runtime.create import CreateOptions, create
        rl = rootless()
        bundle = os.path.dirname(merged)
        runspec.write(bundle, spec)
        cid = "build-" + uuid.uuid4().hex[:16]
        self.containers += 1
        self.out(f"--> running in container {cid}")
        sys.stdout.flush()
        sys.stderr.flush()
        saved = os.dup(0)
        devnull = os.open(os.devnull, os.O_RDONLY)
        created = False
        try:
            os.dup2(devnull, 0)
            try:
                state_ = create(CreateOptions(self.runtime_root, cid, bundle,
                                              rootless=True if rl else None))
                created = True
            finally:
                os.dup2(saved, 0)
            pid = state_["pid"]
            Container(self.runtime_root, cid).start(lambda m: None)
            _, status = os.waitpid(pid, 0)
            return os.waitstatus_to_exitcode(status)
        except Exception as e:
            if isinstance(e, BuildError):
                raise
            raise fail(p, step.instruction, f"RUN: cannot run the container: {e}") from None
        finally:
            os.close(saved)
            os.close(devnull)
            if created:
                with contextlib.suppress(Exception):
                    Container(self.runtime_root, cid).delete(True, lambda m: None)
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(bundle, "config.json"))   # it may hold secrets


def _host_etc(merged: str) -> list[dict[str, Any]]:
    """With the host's network: its resolv.conf and hosts, bound read-only over the
    rootfs's own where it has them as plain files."""
    out: list[dict[str, Any]] = []
    for f in ("/etc/resolv.conf", "/etc/hosts"):
        target = os.path.join(merged, f.lstrip("/"))
        if os.path.isfile(f) and os.path.isfile(target) and not os.path.islink(target):
            out.append({"destination": f, "type": "bind", "source": f,
                        "options": ["rbind", "ro"]})
    return out


def _pipes(d: str, files: dict[str, str]) -> str:
    """The heredoc scripts a RUN executes, as files (mode 0755) in `d`."""
    for name, body in files.items():
        path = os.path.join(d, name)
        with open(path, "w") as f:
            f.write(body)
        os.chmod(path, 0o755)
    os.chmod(d, 0o755)
    return d


def _missing_mountpoints(root: str, destinations: list[str]) -> list[str]:
    """The first missing component of each mount destination: the runtime makes these as
    mount points, and they should not end up in the layer (buildkit removes them too)."""
    out: list[str] = []
    for dest in destinations:
        cur = root
        for part in [x for x in dest.split("/") if x]:
            cur = os.path.join(cur, part)
            if os.path.islink(cur):
                break
            if not os.path.lexists(cur):
                if cur not in out:
                    out.append(cur)
                break
    return out


def _remove_stubs(root: str, stubs: list[str], destinations: list[str]) -> None:
    """Remove mount-point stubs the RUN left empty (only new names: no whiteouts needed):
    the directories, and the empty files made for file mounts inside them."""
    files = {os.path.join(root, d.lstrip("/")) for d in destinations}
    for stub in stubs:
        try:
            st = os.lstat(stub)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            for dirpath, _, names in sorted(os.walk(stub), key=lambda w: -len(w[0])):
                for n in names:
                    path = os.path.join(dirpath, n)
                    if path in files and os.path.isfile(path) and \
                            not os.path.islink(path) and os.path.getsize(path) == 0:
                        os.unlink(path)
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
        elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(stub)
