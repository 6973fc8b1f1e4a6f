"""Platforms (`os/arch[/variant]`) with containerd's normalisation, and the choice of one
manifest from an index or manifest list (attestations, `unknown/unknown`, never match). The one
Platform type of imagetool: the registry client, the store's lookups and the builder use it, so
the offline side needs nothing of the registry for it."""

from __future__ import annotations

import os
from dataclasses import dataclass

from imagetool.errors import ImagetoolError

# containerd's normalizeArch aliases (GOARCH names); armel is arm/v6, armhf arm/v7.
_ARCH = {"x86_64": "amd64", "x86-64": "amd64", "amd64": "amd64", "aarch64": "arm64",
         "arm64": "arm64", "armhf": "arm", "armel": "arm", "i386": "386", "i486": "386",
         "i586": "386", "i686": "386", "386": "386", "ppc64le": "ppc64le",
         "s390x": "s390x", "riscv64": "riscv64", "mips64le": "mips64le"}
ATTESTATION_KEY = "vnd.docker.reference.type"


class PlatformError(ImagetoolError, ValueError):
    """A platform text that is not os/arch[/variant], or no manifest for the wanted one."""


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    @property
    def arch(self) -> str:
        """The architecture (BuildKit's TARGETARCH name for it)."""
        return self.architecture

    @classmethod
    def parse(cls, text: str) -> Platform:
        """As --platform for a build reads it: os/arch[/variant], or a bare arch (linux)."""
        return parse(text, bare_arch=True)

    @classmethod
    def host(cls) -> Platform:
        return host()

    def __str__(self) -> str:
        base = f"{self.os}/{self.architecture}"
        return f"{base}/{self.variant}" if self.variant else base


def normalize(os_name: str, arch: str, variant: str = "") -> Platform:
    """x86_64 -> amd64, aarch64 -> arm64 (v8 is its default variant), armv7l -> arm/v7,
    armel -> arm/v6, arm without a variant -> arm/v7."""
    os_name = os_name.lower()
    arch = arch.lower()
    variant = variant.lower()
    if arch.startswith("armv") and arch[4:5].isdigit():
        variant = variant or f"v{arch[4]}"
        arch = "arm"
    if arch == "armel":
        variant = variant or "v6"
    arch = _ARCH.get(arch, arch)
    if arch == "arm64" and variant in ("8", "v8"):
        variant = ""
    if arch == "arm" and variant.isdigit():
        variant = f"v{variant}"
    if arch == "arm" and not variant:
        variant = "v7"
    if arch == "amd64" and variant == "v1":
        variant = ""
    return Platform(os_name, arch, variant)


def parse(text: str, *, bare_arch: bool = False) -> Platform:
    """`linux/amd64`, `linux/arm/v7`; with bare_arch also `arm64` (= linux/arm64).
    PlatformError for anything else."""
    parts = text.strip().split("/")
    if bare_arch and len(parts) == 1 and parts[0]:
        parts = ["linux", parts[0]]
    if len(parts) not in (2, 3) or not all(parts):
        raise PlatformError(f"invalid platform {text!r}: want os/arch[/variant]")
    return normalize(*parts)


def host() -> Platform:
    """This machine's platform (linux/<arch>)."""
    u = os.uname()  # what platform.system()/machine() return, without importing platform
    return normalize(u.sysname or "linux", u.machine or "amd64")


def of_descriptor(desc: dict) -> Platform | None:
    p = desc.get("platform")
    if not isinstance(p, dict) or not p.get("os") or not p.get("architecture"):
        return None
    return normalize(p["os"], p["architecture"], p.get("variant", ""))


def is_attestation(desc: dict) -> bool:
    p = desc.get("platform") or {}
    ann = desc.get("annotations") or {}
    return ATTESTATION_KEY in ann or (p.get("os") == "unknown" and
                                      p.get("architecture") == "unknown")


def select(manifests: list[dict], want: Platform, where: str) -> dict:
    """The entry for `want`: an exact variant match first, then one without a variant
    (arm64 serves any arm64 request); the first such entry in index order wins.
    PlatformError naming the platforms present when none fits."""
    exact, loose = None, None
    for desc in manifests:
        if is_attestation(desc):
            continue
        p = of_descriptor(desc)
        if p is None or p.os != want.os or p.architecture != want.architecture:
            continue
        if p.variant == want.variant and exact is None:
            exact = desc
        elif (not want.variant or not p.variant) and loose is None:
            loose = desc
    found = exact or loose
    if found is None:
        have = sorted({str(p) for d in manifests if not is_attestation(d)
                       for p in [of_descriptor(d)] if p})
        raise PlatformError(f"{where}: no manifest for platform {want} "
                            f"(available: {', '.join(have) or 'none'})")
    return found
