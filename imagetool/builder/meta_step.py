"""The config-only build steps (ENV, LABEL, CMD, ENTRYPOINT, EXPOSE, VOLUME, USER, STOPSIGNAL,
SHELL, HEALTHCHECK, ONBUILD, MAINTAINER, ARG): what each changes in the image config and
the stage state, and the `created_by` text docker's history gives it."""

from __future__ import annotations

import json
from typing import Any

from . import dockerfile as df
from .errors import fail
from .plan import BuildPlan, Step
from .state import StageState


def _words(cmd: list[str]) -> str:
    return json.dumps(cmd)


def apply(p: BuildPlan, state: StageState, step: Step) -> str:
    """Apply one config-only step to `state`; its history text (without the `#(nop)` prefix).
    An EXPOSE value that is invalid once expanded is a BuildError naming the line."""
    ins = step.expanded
    conf = state.config.setdefault("config", {})
    text = ins.original.strip()
    if isinstance(ins, df.Env):
        conf["Env"] = [f"{k}={v}" for k, v in step.image_env.items()]
        state.env = dict(step.image_env)
        text = "ENV " + " ".join(f"{kv.key}={kv.value}" for kv in ins.pairs)
    elif isinstance(ins, df.Label):
        labels = conf.get("Labels") or {}
        for kv in ins.pairs:
            labels[kv.key] = kv.value
        conf["Labels"] = labels
        text = "LABEL " + " ".join(f"{kv.key}={kv.value}" for kv in ins.pairs)
    elif isinstance(ins, df.Cmd):
        conf["Cmd"] = [*state.shell, ins.command[0]] if ins.shell_form else list(ins.command)
        state.cmd_set = True
        text = "CMD " + _words(conf["Cmd"])
    elif isinstance(ins, df.Entrypoint):
        conf["Entrypoint"] = ([*state.shell, ins.command[0]] if ins.shell_form
                              else list(ins.command)) or None
        if not state.cmd_set:
            conf.pop("Cmd", None)   # docker: ENTRYPOINT resets an inherited CMD
        text = "ENTRYPOINT " + _words(conf["Entrypoint"] or [])
    elif isinstance(ins, df.Expose):
        ports = conf.get("ExposedPorts") or {}
        try:
            for port in df.exposed_ports(ins.ports):
                ports[port] = {}
        except ValueError as e:
            raise fail(p, step.instruction, f"EXPOSE: {e}") from None
        conf["ExposedPorts"] = ports
        text = "EXPOSE " + " ".join(sorted(ports))
    elif isinstance(ins, df.Volume):
        vols = conf.get("Volumes") or {}
        for v in ins.paths:
            vols[v] = {}
        conf["Volumes"] = vols
        text = "VOLUME " + _words(ins.paths)
    elif isinstance(ins, df.User):
        conf["User"] = ins.user
        text = "USER " + ins.user
    elif isinstance(ins, df.StopSignal):
        conf["StopSignal"] = ins.signal
        text = "STOPSIGNAL " + ins.signal
    elif isinstance(ins, df.Shell):
        state.shell = list(ins.shell)
        conf["Shell"] = list(ins.shell)
        text = "SHELL " + _words(ins.shell)
    elif isinstance(ins, df.Healthcheck):
        hc: dict[str, Any] = {"Test": list(ins.test)}
        for k, n in (("Interval", ins.interval), ("Timeout", ins.timeout),
                     ("StartPeriod", ins.start_period),
                     ("StartInterval", ins.start_interval), ("Retries", ins.retries)):
            if n:
                hc[k] = n
        conf["Healthcheck"] = hc
        text = "HEALTHCHECK " + _words(ins.test)
    elif isinstance(ins, df.Onbuild):
        conf["OnBuild"] = [*(conf.get("OnBuild") or []), ins.expression]
        text = "ONBUILD " + ins.expression
    elif isinstance(ins, df.Maintainer):
        state.config["author"] = ins.name
        text = "MAINTAINER " + ins.name
    elif isinstance(ins, df.Arg):
        text = "ARG " + " ".join(a.name + (f"={a.default}" if a.default is not None else "")
                                 for a in ins.args)
    return text
