"""Unpack side by side: `imagetool unpack` against `umoci unpack` on one ~300 MB, three-layer
image built here without the internet.

    .venv/bin/python -m bench.unpack_bench [--runs N] [--json OUT] [--keep DIR]

The image (built once per run, by umoci into an OCI layout, then loaded into our store with
`imagetool load`, so both tools read the very same blobs):
  1. base   a Debian slice copied from this machine's /usr (python3.11's stdlib, vim, perl,
            icons, zoneinfo, ...; setuid binaries, hardlinks, symlinks) plus a small /etc
  2. app    generated files (seeded, half random bytes and half text: gzip gets ~2x), with
            symlinks, hardlinks, xattrs, a fifo and a device node
  3. patch  whiteouts of base files and of a whole directory, an opaque directory, files
            replaced and added
Measured, in rounds whose order rotates (so drift hits every variant alike), each into a
fresh bundle path:
  umoci           `umoci unpack --image STORE:NAME BUNDLE` (umoci also writes its mtree)
  copy            `imagetool unpack NAME BUNDLE` (full copy, umoci-like; the default)
  overlay-cold    `imagetool unpack --mode overlay` with no layer snapshots yet: extracts the
                  layers into <store>/snapshots, then mounts an overlay
  overlay-warm    the same with the snapshots present: a second container of the image
Nothing is deleted until the end (overlays are unmounted, cold snapshots are moved aside):
this ext4 has no journal, and there every inode allocation skips, one by one, the inodes of
its block group freed in the last 5 to 300 seconds, so a round after an `rm -rf` of 15000
files pays up to 0.5 ms per file created, whichever tool runs. For the same reason the work
directory gets the ext4 TOPDIR flag (chattr +T): the directory of the runs then starts in
a block group of its own instead of the ones other processes in /tmp churn, and the bundles
follow it there (nothing is freed in it while we run); and every timed command runs
after `sync` (clean inode tables shrink that window to 5 s) and --settle seconds. Both tools
get the same. User and system CPU time (wait4) are reported next to the wall time: user
time is what the tools themselves do and moves least on a shared machine; system time
carries the inode-allocation effect above.
Round 0 warms the page cache and is not kept. Results go to bench/results/.
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from typing import Any

from bench._common import summarise, table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IMAGETOOL = os.path.join(os.path.dirname(sys.executable), "imagetool")
NAME = "docker.io/library/unpack-bench:latest"
UMOCI = shutil.which("umoci") or "/usr/bin/umoci"
BASE_DIRS = ("usr/lib/python3.11", "usr/share/vim", "usr/share/perl", "usr/share/icons",
             "usr/share/zoneinfo", "usr/share/cmake-3.25", "usr/share/i18n", "usr/share/mime")
BIN_BUDGET = 60 << 20  # bytes of /usr/bin (sorted by name) taken into the base layer
APP_BYTES = 60 << 20
SEED = 20240601


# -- the image ---------------------------------------------------------------------------------
def _info(name: str, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, size: int = 0,
          uid: int = 0, gid: int = 0, link: str = "") -> tarfile.TarInfo:
    ti = tarfile.TarInfo(name)
    ti.type, ti.mode, ti.size, ti.uid, ti.gid, ti.linkname = kind, mode, size, uid, gid, link
    ti.mtime = 1_700_000_000
    return ti


def _add_bytes(tf: tarfile.TarFile, name: str, data: bytes, mode: int = 0o644, uid: int = 0,
               gid: int = 0, xattrs: dict[str, str] | None = None) -> None:
    ti = _info(name, mode=mode, size=len(data), uid=uid, gid=gid)
    for k, v in (xattrs or {}).items():
        ti.pax_headers["SCHILY.xattr." + k] = v
    tf.addfile(ti, io.BytesIO(data))


def _blob(rng: random.Random, size: int) -> bytes:
    """Half random bytes, half text, so the gzip ratio is about 2 (like real binaries)."""
    half = size // 2
    words = b"lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor "
    text = (words * (half // len(words) + 1))[:size - half]
    return rng.randbytes(half) + text


def base_layer(path: str) -> None:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        for d in ("bin", "etc", "dev", "proc", "sys", "root", "tmp", "usr", "usr/lib",
                  "usr/share", "usr/bin", "var", "var/empty"):
            tf.addfile(_info(d, tarfile.DIRTYPE, 0o1777 if d == "tmp" else 0o755))
        tf.addfile(_info("lib", tarfile.SYMTYPE, 0o777, link="usr/lib"))
        _add_bytes(tf, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                   b"app:x:1000:1000:app:/home/app:/bin/sh\n")
        _add_bytes(tf, "etc/group", b"root:x:0:\napp:x:1000:\n")
        for d in BASE_DIRS:
            if os.path.isdir("/" + d):
                tf.add("/" + d, arcname=d)
        used = 0
        for name in sorted(os.listdir("/usr/bin")):
            p = os.path.join("/usr/bin", name)
            st = os.lstat(p)
            if used + st.st_size > BIN_BUDGET:
                continue
            used += st.st_size
            tf.add(p, arcname="usr/bin/" + name, recursive=False)


def app_layer(path: str) -> None:
    rng = random.Random(SEED)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(_info("app", tarfile.DIRTYPE, 0o755, uid=1000, gid=1000))
        total, n = 0, 0
        while total < APP_BYTES:
            d = f"app/d{n // 100:03d}"
            if n % 100 == 0:
                tf.addfile(_info(d, tarfile.DIRTYPE, 0o750, uid=1000, gid=1000))
            size = int(10 ** rng.uniform(2, 6.3))
            _add_bytes(tf, f"{d}/f{n:05d}", _blob(rng, size), mode=rng.choice((0o644, 0o600,
                       0o755)), uid=1000, gid=1000,
                       xattrs={"user.bench": f"v{n}"} if n % 50 == 0 else None)
            if n % 20 == 0:
                tf.addfile(_info(f"{d}/l{n:05d}", tarfile.SYMTYPE, 0o777, link=f"f{n:05d}"))
            if n % 40 == 0:
                tf.addfile(_info(f"{d}/h{n:05d}", tarfile.LNKTYPE, link=f"{d}/f{n:05d}"))
            total += size
            n += 1
        tf.addfile(_info("app/fifo", tarfile.FIFOTYPE, 0o600))
        null = _info("app/null", tarfile.CHRTYPE, 0o666)
        null.devmajor, null.devminor = 1, 3
        tf.addfile(null)


def patch_layer(path: str) -> None:
    rng = random.Random(SEED + 1)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tf:
        tf.addfile(_info("usr/share/vim", tarfile.DIRTYPE, 0o755))
        for victim in ("usr/share/vim/.wh.vim90", "usr/share/perl/.wh.5.36",
                       "usr/lib/python3.11/.wh.os.py"):
            tf.addfile(_info(victim))
        tf.addfile(_info("app/d000", tarfile.DIRTYPE, 0o700, uid=1000, gid=1000))
        tf.addfile(_info("app/d000/.wh..wh..opq"))
        for i in range(50):
            _add_bytes(tf, f"app/d000/new{i:03d}", _blob(rng, 100_000), uid=1000, gid=1000)
        _add_bytes(tf, "etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
                   b"app:x:1000:1000:app:/home/app:/bin/sh\nbench:x:1001:1000::/:/bin/sh\n")
        _add_bytes(tf, "usr/lib/python3.11/os.py.new", _blob(rng, 5 << 20))


def build_image(work: str, store: str) -> dict[str, Any]:
    """Make the three layers, an OCI layout holding them (umoci), and load it into `store`."""
    layout = os.path.join(work, "layout")
    tars = []
    for fn in (base_layer, app_layer, patch_layer):
        p = os.path.join(work, fn.__name__ + ".tar")
        fn(p)
        tars.append(p)
    tag = f"{layout}:{NAME}"
    cmds = [["umoci", "init", "--layout", layout], ["umoci", "new", "--image", tag]]
    cmds += [["umoci", "raw", "add-layer", "--image", tag, t] for t in tars]
    cmds += [["umoci", "config", "--image", tag, "--config.cmd", "/bin/sh",
              "--config.env", "PATH=/usr/bin:/bin"]]
    for c in cmds:
        subprocess.run(c, check=True, capture_output=True, timeout=600)
    archive = os.path.join(work, "layout.tar")
    with tarfile.open(archive, "w") as tf:
        tf.add(layout, arcname=".")
    subprocess.run([IMAGETOOL, "--root", store, "load", "-q", "-i", archive], check=True,
                   capture_output=True, timeout=600)
    os.unlink(archive)
    raw = sum(os.path.getsize(t) for t in tars)
    for t in tars:
        os.unlink(t)
    blobs = os.path.join(layout, "blobs", "sha256")
    packed = sum(os.path.getsize(os.path.join(blobs, b)) for b in os.listdir(blobs))
    shutil.rmtree(layout)
    return {"layers": len(tars), "uncompressed_bytes": raw, "blob_bytes": packed}


# -- timing ------------------------------------------------------------------------------------
def run_timed(argv: list[str], errlog: str) -> tuple[float, float, float]:
    """(wall ms, user ms, system ms) of argv, spawned without a shell; stderr to errlog."""
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_OPEN, 2, errlog, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)]
    t0 = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, os.environ, file_actions=actions)
    _, status, ru = os.wait4(pid, 0)
    wall = (time.perf_counter() - t0) * 1e3
    if os.waitstatus_to_exitcode(status) != 0:
        with open(errlog, errors="replace") as f:
            raise SystemExit(f"{' '.join(argv)} failed: {f.read()[-2000:]}")
    return wall, ru.ru_utime * 1e3, ru.ru_stime * 1e3


def _mounted(path: str) -> bool:
    with open("/proc/self/mountinfo") as f:
        return any(line.split()[4] == path for line in f)


def _unmount(bundle: str) -> None:
    rootfs = os.path.join(bundle, "rootfs")
    if os.path.isdir(rootfs) and _mounted(rootfs):
        subprocess.run(["umount", rootfs], check=True)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--json", help="results file (default bench/results/unpack-<time>.json)")
    ap.add_argument("--keep", help="work dir to reuse (keeps the built image between runs)")
    ap.add_argument("--settle", type=float, default=6.0,
                    help="seconds to wait after `sync` before each timed command (default 6)")
    args = ap.parse_args(argv)
    if os.geteuid() != 0:
        raise SystemExit("unpack_bench: run as root (both tools chown and mknod)")
    work = args.keep or tempfile.mkdtemp(prefix="unpack-bench-")
    os.makedirs(work, exist_ok=True)
    subprocess.run(["chattr", "+T", work], check=False, capture_output=True)
    store = os.path.join(work, "store")
    errlog = os.path.join(work, "errors.log")
    runs_dir = os.path.join(work, f"runs-{os.getpid()}")
    os.makedirs(runs_dir)  # placed by ext4's Orlov allocator (work is TOPDIR); bundles follow
    made: list[str] = []
    try:
        info_path = os.path.join(work, "image.json")
        if os.path.exists(info_path):
            with open(info_path) as f:
                image = json.load(f)
        else:
            t0 = time.monotonic()
            image = build_image(work, store)
            image["build_s"] = round(time.monotonic() - t0, 1)
            with open(info_path, "w") as f:
                json.dump(image, f)
        print(f"image: {image['layers']} layers, {image['uncompressed_bytes'] / 1e6:.0f} MB "
              f"of tar, {image['blob_bytes'] / 1e6:.0f} MB of blobs", file=sys.stderr)
        snapdir = os.path.join(store, "snapshots")
        ours = [IMAGETOOL, "--root", store, "unpack"]
        variants = {
            "umoci": ([UMOCI, "unpack", "--image", f"{store}:{NAME}"], None),
            "copy": ([*ours, NAME], None),
            "overlay-cold": ([*ours, "--mode", "overlay", NAME], "cold"),
            "overlay-warm": ([*ours, "--mode", "overlay", NAME], "warm"),
        }
        samples: dict[str, list[float]] = {k: [] for k in variants}
        user_samples: dict[str, list[float]] = {k: [] for k in variants}
        sys_samples: dict[str, list[float]] = {k: [] for k in variants}
        order = list(variants)
        n = 0
        for rnd in range(args.runs + 1):  # round 0 warms the page cache and is not kept
            for name in order[rnd % len(order):] + order[:rnd % len(order)]:
                argv_, snaps = variants[name]
                n += 1
                if snaps == "cold" and os.path.isdir(snapdir):
                    os.rename(snapdir, os.path.join(runs_dir, f"snapshots-{n}"))
                elif snaps == "warm" and not os.path.isdir(snapdir):
                    prime = os.path.join(runs_dir, f"prime-{n}")
                    made.append(prime)
                    run_timed([*argv_, prime], errlog)
                    _unmount(prime)
                bundle = os.path.join(runs_dir, f"{name}-{n}")
                made.append(bundle)
                subprocess.run(["sync"], check=True)
                time.sleep(args.settle)
                wall, user, system = run_timed([*argv_, bundle], errlog)
                _unmount(bundle)
                if rnd:
                    samples[name].append(wall)
                    user_samples[name].append(user)
                    sys_samples[name].append(system)
        rows, out = [], {}
        ref = {k: summarise(v["umoci"])["median"] for k, v in
               (("wall", samples), ("user", user_samples), ("sys", sys_samples))}
        for name in variants:
            w, u, y = (summarise(v[name]) for v in (samples, user_samples, sys_samples))
            out[name] = {"wall_ms": dict(w), "user_ms": dict(u), "sys_ms": dict(y),
                         "ratio_to_umoci": round(w["median"] / ref["wall"], 3),
                         "user_ratio_to_umoci": round(u["median"] / ref["user"], 3),
                         "sys_ratio_to_umoci": round(y["median"] / ref["sys"], 3)}
            rows.append([name, f"{w['median']:.0f}", f"{w['p10']:.0f}", f"{w['p90']:.0f}",
                         f"{w['median'] / ref['wall']:.3f}", f"{u['median']:.0f}",
                         f"{y['median']:.0f}", f"{u['median'] / ref['user']:.3f}"])
        print(table(["variant", "wall ms", "p10", "p90", "x umoci", "user ms", "sys ms",
                     "user x umoci"], rows))
        result = {"bench": "unpack", "when": datetime.datetime.now(datetime.UTC).isoformat(),
                  "host": {"cpus": os.cpu_count(), "kernel": platform.release(),
                           "umoci": subprocess.run([UMOCI, "--version"], capture_output=True,
                                                   text=True).stdout.strip()},
                  "image": image, "runs": args.runs, "settle_s": args.settle, "results": out,
                  "samples_ms": {k: [round(v, 1) for v in vs] for k, vs in samples.items()},
                  "user_samples_ms": {k: [round(v, 1) for v in vs]
                                      for k, vs in user_samples.items()},
                  "sys_samples_ms": {k: [round(v, 1) for v in vs]
                                     for k, vs in sys_samples.items()}}
        path = args.json or os.path.join(
            REPO, "bench", "results",
            f"unpack-{datetime.datetime.now().strftime('%Y%m%d-%H%M%S')}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(result, f, indent=1)
        print(f"results: {path}", file=sys.stderr)
        return 0
    finally:
        for b in made:
            _unmount(b)
        shutil.rmtree(runs_dir, ignore_errors=True)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
