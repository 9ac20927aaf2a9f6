"""The built-in patch catalog: realistic per-OS vocabulary, stable ids, and scenario patches on top."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import pytest

from include.sandbox.catalog import (
    BUILTIN_PATCHES,
    OS_FAMILIES,
    Catalog,
    build_catalog,
    content_url,
    is_security,
    windows_update_id,
)
from include.sandbox.scenario import Patch, parse_scenario

# Each family's id pattern and the vocabulary Patch Manager uses for it.
VOCABULARY: dict[str, tuple[str, set[str], set[str]]] = {
    "AMAZON_LINUX_2023": (
        r"^ALAS2023-2026-\d{4}$",
        {"Security", "Bugfix", "Enhancement"},
        {"Critical", "Important", "Medium", "Low", "None"},
    ),
    "AMAZON_LINUX_2": (
        r"^ALAS2-2026-\d{4}$",
        {"Security", "Bugfix", "Enhancement"},
        {"Critical", "Important", "Medium", "Low", "None"},
    ),
    "REDHAT_ENTERPRISE_LINUX": (
        r"^RH[SBE]A-2026:\d{4}$",
        {"Security", "Bugfix", "Enhancement"},
        {"Critical", "Important", "Moderate", "Low", "None"},
    ),
    "UBUNTU": (
        r"^(USN-\d{4}-\d|[a-z0-9.+-]+_[0-9][A-Za-z0-9.+~:-]*)$",
        {"Security", "Updates"},
        {"Critical", "High", "Medium", "Low"},
    ),
    "WINDOWS": (
        r"^KB\d{6,7}$",
        {"SecurityUpdates", "CriticalUpdates", "Updates", "DefinitionUpdates"},
        {"Critical", "Important", "Moderate", "Low", "Unspecified"},
    ),
}
CVE = re.compile(r"^CVE-2026-\d{5}$")


def _scenario(catalog: dict[str, Any]) -> Any:
    return parse_scenario(
        {
            "name": "catalog-test",
            "accounts": [{"id": "123456789012", "regions": {"us-east-1": {}}}],
            "catalog": catalog,
        }
    )


def _get(catalog: Catalog, patch_id: str) -> Patch:
    patch = catalog.get(patch_id)
    assert patch is not None, patch_id
    return patch


def _extra(patch_id: str, os: str = "AMAZON_LINUX_2023", released: str = "2026-11-01") -> dict[str, Any]:
    return {
        "id": patch_id,
        "os": os,
        "title": f"test patch {patch_id}",
        "classification": "Security",
        "severity": "Critical",
        "released": released,
        "cves": ["CVE-2026-99999"],
        "reboot": True,
    }


@pytest.mark.parametrize("os", OS_FAMILIES)
def test_each_family_has_a_realistic_number_of_patches_in_the_window(os: str) -> None:
    patches = build_catalog(_scenario({})).for_os(os)
    assert 15 <= len(patches) <= 30
    assert all(date(2026, 6, 1) <= p.released <= date(2026, 11, 20) for p in patches)
    assert [p.released for p in patches] == sorted(p.released for p in patches)


@pytest.mark.parametrize("os", OS_FAMILIES)
def test_each_family_speaks_patch_managers_vocabulary(os: str) -> None:
    pattern, classifications, severities = VOCABULARY[os]
    patches = [p for p in BUILTIN_PATCHES if p.os == os]
    assert all(re.match(pattern, p.id) for p in patches), [p.id for p in patches if not re.match(pattern, p.id)]
    assert {p.classification for p in patches} <= classifications
    assert {p.severity for p in patches} <= severities
    # Every family has something critical to chase and something that is not a security fix.
    assert any(p.severity == "Critical" for p in patches)
    assert any(not is_security(p) for p in patches)


def test_security_patches_carry_cves_and_only_they_do() -> None:
    for patch in BUILTIN_PATCHES:
        assert all(CVE.match(cve) for cve in patch.cves), patch
        assert bool(patch.cves) == is_security(patch), patch
    assert any(len(p.cves) >= 3 for p in BUILTIN_PATCHES)


def test_a_cve_is_fixed_on_several_os_families() -> None:
    families: dict[str, set[str]] = {}
    for patch in BUILTIN_PATCHES:
        for cve in patch.cves:
            families.setdefault(cve, set()).add(patch.os)
    assert families["CVE-2026-21040"] == {"AMAZON_LINUX_2023", "AMAZON_LINUX_2", "REDHAT_ENTERPRISE_LINUX", "UBUNTU"}
    assert "WINDOWS" in families["CVE-2026-23001"] and "UBUNTU" in families["CVE-2026-23001"]


def test_kernel_and_cumulative_updates_need_a_reboot_and_others_do_not() -> None:
    catalog = build_catalog(_scenario({}))
    reboot = {p.id for p in BUILTIN_PATCHES if p.reboot}
    kernels = {p.id for p in BUILTIN_PATCHES if catalog.package(p.id) in ("kernel", "linux")}
    cumulative = {p.id for p in BUILTIN_PATCHES if p.os == "WINDOWS" and "Cumulative Update for Microsoft" in p.title}
    assert kernels and cumulative
    assert kernels | cumulative <= reboot
    assert not _get(catalog, "ALAS2023-2026-1035").reboot


def test_ids_are_unique_and_looked_up() -> None:
    catalog = build_catalog(_scenario({}))
    assert len({p.id for p in BUILTIN_PATCHES}) == len(BUILTIN_PATCHES) == len(catalog)
    patch = catalog.get("KB5070506")
    assert patch is not None and patch.os == "WINDOWS" and patch.released == date(2026, 11, 10)
    assert patch.title == (
        "2026-11 Cumulative Update for Microsoft server operating system version 21H2 for x64-based Systems (KB5070506)"
    )
    assert catalog.get("KB0000000") is None
    assert "USN-7848-1" in catalog and "USN-0000-1" not in catalog
    assert [p.id for p in catalog.all()] == [p.id for p in sorted(BUILTIN_PATCHES, key=lambda p: (p.released, p.id))]


def test_scenario_patches_are_added_in_release_order() -> None:
    catalog = build_catalog(_scenario({"patches": [_extra("ALAS2023-2026-9001", released="2026-10-01")]}))
    ids = [p.id for p in catalog.for_os("AMAZON_LINUX_2023")]
    assert ids.index("ALAS2023-2026-1094") < ids.index("ALAS2023-2026-9001") < ids.index("ALAS2023-2026-1101")
    assert len(catalog) == len(BUILTIN_PATCHES) + 1


def test_a_scenario_patch_with_a_builtin_id_replaces_it() -> None:
    catalog = build_catalog(_scenario({"patches": [_extra("ALAS2023-2026-1035", os="UBUNTU")]}))
    patch = catalog.get("ALAS2023-2026-1035")
    assert patch is not None and patch.os == "UBUNTU" and patch.title == "test patch ALAS2023-2026-1035"
    assert "ALAS2023-2026-1035" not in {p.id for p in catalog.for_os("AMAZON_LINUX_2023")}
    assert catalog.package("ALAS2023-2026-1035") is None  # the built-in's package no longer describes it
    assert len(catalog) == len(BUILTIN_PATCHES)


def test_builtin_catalog_can_be_turned_off() -> None:
    catalog = build_catalog(_scenario({"builtin": False, "patches": [_extra("KB9999999", os="WINDOWS")]}))
    assert [p.id for p in catalog.all()] == ["KB9999999"]
    assert catalog.for_os("AMAZON_LINUX_2023") == []


def test_catalog_orders_by_release_date_then_id() -> None:
    early = Patch("B", "WINDOWS", "b", "Updates", "Unspecified", date(2026, 7, 1))
    late = Patch("A", "WINDOWS", "a", "Updates", "Unspecified", date(2026, 8, 1))
    same_day = Patch("C", "WINDOWS", "c", "Updates", "Unspecified", date(2026, 7, 1))
    assert [p.id for p in Catalog([late, same_day, early]).for_os("WINDOWS")] == ["B", "C", "A"]


def test_vendor_urls_and_windows_update_ids() -> None:
    catalog = build_catalog(_scenario({}))
    urls = {
        pid: content_url(_get(catalog, pid)) for pid in ("KB5070506", "ALAS2-2026-2297", "USN-7848-1", "RHSA-2026:4190")
    }
    assert urls == {
        "KB5070506": "https://support.microsoft.com/help/5070506",
        "ALAS2-2026-2297": "https://alas.aws.amazon.com/AL2/ALAS2-2026-2297.html",
        "USN-7848-1": "https://ubuntu.com/security/notices/USN-7848-1",
        "RHSA-2026:4190": "https://access.redhat.com/errata/RHSA-2026:4190",
    }
    lcu, net = _get(catalog, "KB5070506"), _get(catalog, "KB5070567")
    assert windows_update_id(lcu) == windows_update_id(lcu) != windows_update_id(net)
    assert re.match(r"^[0-9a-f-]{36}$", windows_update_id(lcu))
