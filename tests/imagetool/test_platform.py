"""imagetool/platform.py: the one Platform type (registry, store lookups and builder) and
its normalisation; the registry's view raises ManifestError."""

from __future__ import annotations

import pytest

from imagetool import platform
from imagetool.builder.plan import Platform as PlanPlatform
from imagetool.registry import platform as regplat
from imagetool.registry.errors import ManifestError


def test_one_type():
    assert PlanPlatform is platform.Platform is regplat.Platform
    p = platform.parse("linux/x86_64")
    assert (p.architecture, p.arch, str(p)) == ("amd64", "amd64", "linux/amd64")


@pytest.mark.parametrize("text,want", [
    ("linux/armel", "linux/arm/v6"), ("linux/armhf", "linux/arm/v7"),
    ("linux/i686", "linux/386"), ("Linux/ARM64/v8", "linux/arm64"),
    ("linux/amd64/v1", "linux/amd64"), ("linux/armv6l", "linux/arm/v6"),
])
def test_normalisation(text, want):
    assert str(platform.parse(text)) == want == str(platform.Platform.parse(text))


def test_bare_arch_only_for_builds():
    assert str(platform.Platform.parse("arm64")) == "linux/arm64"
    with pytest.raises(platform.PlatformError, match="want os/arch"):
        platform.parse("arm64")
    with pytest.raises(ManifestError, match="want os/arch"):
        regplat.parse("arm64")


def test_select_errors():
    index = [{"platform": {"os": "linux", "architecture": "s390x"}},
             {"platform": {"os": "unknown", "architecture": "unknown"}}]
    want = platform.parse("linux/riscv64")
    with pytest.raises(platform.PlatformError, match=r"available: linux/s390x\)"):
        platform.select(index, want, "index")
    with pytest.raises(ManifestError, match="no manifest for platform linux/riscv64"):
        regplat.select(index, want, "index")
