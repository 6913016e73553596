"""The dependency audit: packages pip-audit skipped are checked against PyPI's latest-release data only
when the installed version is that release; nothing unchecked is ever reported as clean."""

from __future__ import annotations

from zadanie4.evaluation.reliability.dependency_audit import check_skipped_against_latest, summarize

SKIP = "Dependency not found on PyPI and could not be audited"


def _raw(*deps: dict) -> dict:
    return {"dependencies": list(deps)}


def _project(version: str, vulns: list[dict] | None = None) -> dict:
    return {"info": {"version": version}, "vulnerabilities": vulns or []}


def test_skipped_package_at_its_latest_release_is_audited_with_pypis_list() -> None:
    # Given pip-audit skipped two packages: one installed at its latest release (with one known and one
    # withdrawn vulnerability), one older than its latest release
    raw = _raw(
        {"name": "fastapi", "version": "0.165.0", "skip_reason": SKIP},
        {"name": "mlflow", "version": "3.17.0", "skip_reason": SKIP},
        {"name": "redis", "version": "7.0.0", "vulns": []},
    )
    projects = {
        "fastapi": _project(
            "0.165.0",
            [
                {"id": "PYSEC-1", "aliases": ["CVE-1"], "fixed_in": ["0.166.0"]},
                {"id": "PYSEC-2", "withdrawn": "2026-01-01"},
            ],
        ),
        "mlflow": _project("3.18.0"),
    }
    # When the skipped ones are checked against their project JSON
    result = check_skipped_against_latest(raw, summarize(raw), projects.get)
    # Then fastapi counts as audited with its live vulnerability, mlflow stays skipped, status says so
    assert result["packages_audited"] == 2
    assert [(v["package"], v["id"], v["source"], v["fix_versions"]) for v in result["vulnerabilities"]] == [
        ("fastapi", "PYSEC-1", "pypi-latest", ["0.166.0"])
    ]
    assert result["status"] == "vulnerable"
    assert result["skipped"] == [f"mlflow: {SKIP}"]
    assert result["latest_release_check"]["not_latest"] == ["mlflow 3.17.0 (latest 3.18.0)"]


def test_unreachable_or_older_packages_keep_the_audit_incomplete_not_clean() -> None:
    raw = _raw(
        {"name": "a", "version": "1.0", "skip_reason": SKIP},
        {"name": "b", "version": "1.0", "skip_reason": SKIP},
        {"name": "c", "version": "2.0", "skip_reason": SKIP},
    )
    result = check_skipped_against_latest(raw, summarize(raw), {"a": _project("1.0"), "b": _project("1.1")}.get)
    assert result["status"] == "incomplete"
    assert result["packages_audited"] == 1
    assert result["latest_release_check"]["unreachable"] == ["c"]
    assert len(result["skipped"]) == 2


def test_every_package_checked_and_none_vulnerable_is_clean() -> None:
    raw = _raw({"name": "a", "version": "1.0", "skip_reason": SKIP}, {"name": "b", "version": "2.0", "vulns": []})
    result = check_skipped_against_latest(raw, summarize(raw), {"a": _project("1.0")}.get)
    assert result["status"] == "clean" and result["packages_audited"] == 2 and result["skipped"] == []


def test_nothing_reachable_is_unaudited() -> None:
    raw = _raw({"name": "a", "version": "1.0", "skip_reason": SKIP})
    result = check_skipped_against_latest(raw, summarize(raw), lambda name: None)
    assert result["status"] == "unaudited" and result["packages_audited"] == 0
