"""RUN steps: the step's command in a pyrunc container on the stage's mounted overlay.

The runtime is used as a library (the init is the builder's child): the stage's env (image
ENV + ARGs in scope), user, workdir and shell; host network unless `--network=none`. Mount
points the runtime had to create are removed again so they don't end up in the layer.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import sys
import uuid
from collections.abc import Callable

from imagetool import convert, layers

from . import dockerfile as df
from .errors import BuildError, fail
from .plan import BuildPlan, Step
from .state import StageState


class RunSteps:
    """Mixin for Builder: RUN."""

    runtime_root: str
    containers: int

    out: Callable[[str], None]

    # -- RUN ------------------------------------------------------------------------------------
    def _run(self, p: BuildPlan, state: StageState, step: Step, merged: str) -> None:
        from runtime.container import Container
        from runtime.create import CreateOptions, create

        ins = step.expanded
        assert isinstance(ins, df.Run)
        conf = state.config.get("config") or {}
        argv = self._run_argv(ins, state)
        user = convert.resolve_user(conf.get("User") or "",
                                    layers.read_file_in(merged, "/etc/passwd"),
                                    layers.read_file_in(merged, "/etc/group"))
        env = [f"{k}={v}" for k, v in step.env.items()]
        wd = conf.get("WorkingDir") or "/"
        self._mkdir(merged, wd)
        spec = convert.spec_from_image({"config": {"Env": env}}, user=user, entrypoint=[],
                                       cmd=argv, workdir=wd, hostname="buildkitsandbox")
        linux = spec["linux"]
        if ins.network != "none":   # host network: share ours (no network namespace)
            linux["namespaces"] = [n for n in linux["namespaces"] if n["type"] != "network"]
            linux["sysctl"] = {k: v for k, v in (linux.get("sysctl") or {}).items()
                               if not k.startswith("net.")}
            for f in ("/etc/resolv.conf", "/etc/hosts"):
                target = os.path.join(merged, f.lstrip("/"))
                if os.path.isfile(f) and os.path.isfile(target) and \
                        not os.path.islink(target):
                    spec["mounts"].append({"destination": f, "type": "bind", "source": f,
                                           "options": ["rbind", "ro"]})
        stubs = _missing_mountpoints(merged, [m["destination"] for m in spec["mounts"]])
        bundle = os.path.dirname(merged)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            json.dump(spec, f)
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
                state_ = create(CreateOptions(self.runtime_root, cid, bundle))
                created = True
            finally:
                os.dup2(saved, 0)
            pid = state_["pid"]
            Container(self.runtime_root, cid).start(lambda m: None)
            _, status = os.waitpid(pid, 0)
            code = os.waitstatus_to_exitcode(status)
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
        _remove_stubs(merged, stubs)
        if code != 0:
            raise fail(p, step.instruction, f"RUN: process {json.dumps(argv)} did not "
                        f"complete successfully: exit code: {code if code >= 0 else 128 - code}")


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


def _remove_stubs(root: str, stubs: list[str]) -> None:
    """Remove mount-point stubs the RUN left empty (only new names: no whiteouts needed)."""
    for stub in stubs:
        try:
            st = os.lstat(stub)
        except FileNotFoundError:
            continue
        if stat.S_ISDIR(st.st_mode):
            for dirpath, _, _ in sorted(os.walk(stub), key=lambda w: -len(w[0])):
                with contextlib.suppress(OSError):
                    os.rmdir(dirpath)
        elif stat.S_ISREG(st.st_mode) and st.st_size == 0:
            os.unlink(stub)
