"""imagetool's command line. The verbs arrive with their issues; until then this explains
what the tool is for and which verbs are planned, and says so when one is asked for."""

from __future__ import annotations

import argparse
import sys

from imagetool import __version__

PLANNED = {
    "pull": "pull an image from a registry", "push": "push an image to a registry",
    "images": "list images in the store", "import": "make an image from a rootfs tarball",
    "unpack": "unpack an image into a runtime bundle", "run": "run an image on pyrunc",
    "build": "build an image from a Dockerfile",
}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="imagetool", description="Build, ship and run OCI images "
                                "(the image side of the toolchain; pyrunc is the runtime).")
    p.add_argument("--version", action="version", version=f"imagetool {__version__}")
    p.add_argument("verb", nargs="?", choices=sorted(PLANNED), help="; ".join(
        f"{k}: {v}" for k, v in sorted(PLANNED.items())))
    args, _rest = p.parse_known_args(argv)
    if args.verb is None:
        p.print_help()
        return 0
    print(f"imagetool: {args.verb} is not implemented yet", file=sys.stderr)
    return 2
