"""Pod start and teardown latency through containerd's CRI: RuntimeClass handler `pyrunc`
vs handler `runc`, under the same containerd.

    .venv/bin/python -m bench.cri_bench [--runs N] [--warmup N] [--json OUT]
                                        [--code snapshot|as-is]

Starts the CRI suite's private containerd (conformance/cri/cluster.py: own root, state,
socket, CNI dirs and bridge) with both handlers through containerd-shim-runc-v2, the images
built by our own tools and pulled over CRI from a local registry (conformance/cri/images.py),
then per round, for each handler in an order rotated every round, speaks CRI as kubelet does:

  start     RunPodSandbox (pause + CNI) -> CreateContainer -> StartContainer returned
  teardown  StopContainer (grace 10 s; the process ends on SIGTERM) -> RemoveContainer ->
            StopPodSandbox -> RemovePodSandbox returned

Wall milliseconds per phase (gRPC calls from this process; nothing else timed). Medians,
p10/p90 and pyrunc/runc. Goal (issue 14): pyrunc <= 1.05x runc. After each round the pod is
checked for leftovers (shims, mounts, netns, cgroups, runtime state), outside the timings.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from typing import Any

from bench._common import (
    base_meta,
    common_args,
    first_line,
    footer,
    git_state,
    save_result,
    summarise,
    table,
)

HANDLERS = ("pyrunc", "runc")
CALLS = ("RunPodSandbox", "CreateContainer", "StartContainer", "StopContainer",
         "RemoveContainer", "StopPodSandbox", "RemovePodSandbox")
PHASES = (*CALLS, "start", "teardown", "total")
GOAL = 1.05
SLEEPER = ["sleep", "3600"]  # not pid 1 (the pod's pid namespace): SIGTERM ends it


def one_pod(pods: Any, handler: str) -> dict[str, float]:
    """One pod with one container, up and down; each call's and each phase's wall ms."""
    cri = pods.cri
    marks = [("begin", time.perf_counter())]
    pod = pods.run(handler, "bench")
    marks.append(("RunPodSandbox", time.perf_counter()))
    cid = pods.create(pod, "c", SLEEPER)
    marks.append(("CreateContainer", time.perf_counter()))
    cri.start(cid)
    marks.append(("StartContainer", time.perf_counter()))
    cri.stop(cid, grace=10)
    marks.append(("StopContainer", time.perf_counter()))
    cri.remove(cid)
    marks.append(("RemoveContainer", time.perf_counter()))
    cri.stop_pod(pod.id)
    marks.append(("StopPodSandbox", time.perf_counter()))
    cri.remove_pod(pod.id)
    marks.append(("RemovePodSandbox", time.perf_counter()))
    pods.made.remove(pod)
    left = pods.leaks(pod, "")
    if left:
        raise SystemExit(f"cri_bench: {handler} pod left: {'; '.join(left)}")
    out = {name: (t - marks[i][1]) * 1e3 for i, (name, t) in enumerate(marks[1:])}
    at = dict(marks)
    out["start"] = (at["StartContainer"] - at["begin"]) * 1e3
    out["teardown"] = (at["RemovePodSandbox"] - at["StartContainer"]) * 1e3
    out["total"] = (at["RemovePodSandbox"] - at["begin"]) * 1e3
    return out


def measure(pods: Any, runs: int, warmup: int) -> dict[str, dict[str, list[float]]]:
    samples = {h: {p: [] for p in PHASES} for h in HANDLERS}
    order = list(HANDLERS)
    for i in range(warmup + runs):
        for h in order:
            got = one_pod(pods, h)
            if i >= warmup:
                for p in PHASES:
                    samples[h][p].append(got[p])
        order = order[1:] + order[:1]
    return samples


def report(samples: dict[str, dict[str, list[float]]]) -> tuple[str, dict[str, Any]]:
    summ = {h: {p: summarise(v) for p, v in ph.items()} for h, ph in samples.items()}
    rows = []
    ratios = {}
    for p in PHASES:
        py, rc = summ["pyrunc"][p], summ["runc"][p]
        ratios[p] = round(py.median / rc.median, 3)
        rows.append([p, f"{py.median:.1f} ({py.p10:.0f}-{py.p90:.0f})",
                     f"{rc.median:.1f} ({rc.p10:.0f}-{rc.p90:.0f})", f"{ratios[p]:.3f}"])
    text = table(["phase (ms)", "pyrunc median (p10-p90)", "runc median (p10-p90)",
                  "pyrunc/runc"], rows)
    verdict = "met" if ratios["total"] <= GOAL else "NOT met"
    text += f"\ngoal pyrunc/runc <= {GOAL} on the total: {verdict} ({ratios['total']:.3f})"
    return text, {"summary": {h: {p: s.as_dict() for p, s in ph.items()}
                              for h, ph in summ.items()}, "ratios": ratios}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    common_args(ap, runs=20)
    args = ap.parse_args(argv)
    from bench._code import pyrunc_under_test
    from conformance.cri.client import CRIClient
    from conformance.cri.cluster import CRIContainerd, cni_bin_source
    from conformance.cri.images import build_and_push
    from conformance.cri.pods import Pods
    from conformance.engines.bundles import RUNC
    from conformance.engines.procs import short_tempdir
    from conformance.engines.registry import LocalRegistry

    bins = {b: shutil.which(b) for b in ("containerd", "containerd-shim-runc-v2")}
    missing = [b for b, p in bins.items() if not p] + ([] if RUNC else ["runc"])
    if missing or cni_bin_source() is None or not shutil.which("docker-registry"):
        print(f"cri_bench: missing {missing or 'CNI plugins or docker-registry'} "
              "(scripts/install.sh installs them)", file=sys.stderr)
        return 2
    started, load = time.monotonic(), os.getloadavg()
    work = tempfile.mkdtemp(prefix="cri-bench-")
    top = short_tempdir("pyrunc-crib-")
    reg = LocalRegistry(work)
    cluster = None
    problems: list[str] = []
    try:
        reg.start()
        images = build_and_push(os.path.join(work, "images"), reg.host)
        handlers = {"pyrunc": pyrunc_under_test(args.code, work), "runc": RUNC}
        cluster = CRIContainerd(top, bins, handlers, images["pause"], reg.host)
        cluster.start(CRIClient)
        for ref in images.values():
            cluster.client.pull(ref)
        samples = measure(Pods(cluster, images), args.runs, args.warmup)
    finally:
        if cluster is not None:
            problems = cluster.teardown()
        else:
            shutil.rmtree(top, ignore_errors=True)
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)
    text, result = report(samples)
    meta = base_meta(args, started, load, git=git_state(),
                     containerd=first_line([bins["containerd"], "--version"]),
                     runc=first_line([RUNC, "--version"]))
    result.update({"meta": meta, "samples": samples})
    out = save_result("cri", result, args.json)
    print(text + footer(meta) + f"\nraw: {out}")
    if problems:
        print("cri_bench: cleanup problems: " + "; ".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
