"""Known vulnerabilities of the installed dependencies: ``pip-audit`` -> ``artifacts/reliability/pip_audit.json``.

``python -m zadanie4.evaluation.reliability.dependency_audit`` audits every package installed in this interpreter's
environment (the project itself, installed editable, is skipped); ``--packages fastapi starlette ...``
audits only those, at their installed versions. pip-audit asks PyPI's JSON API (one request per
package; the ``pypi`` vulnerability service), so it needs network access to pypi.org. When that
fails the output says ``"status": "unavailable"`` with pip-audit's own message - never an empty
"no vulnerabilities" result.

Where pip-audit could not audit a package (its per-version JSON endpoint unreachable, as behind the
package mirror of this workplace), the package's project JSON (``/pypi/<name>/json``, the latest release
with its ``vulnerabilities``) is asked too: when the installed version IS the latest release, PyPI's list
applies to it and the package counts as audited (source ``pypi-latest``); an older installed version stays
skipped, as nothing here can tell its vulnerabilities.

The JSON: ``{"status", "command", "ran_at", "packages_audited", "vulnerable_packages", "vulnerabilities":
[{"package", "version", "id", "aliases", "fix_versions", "source"}], "skipped": [...], "latest_release_check":
{...}, "error"}``; ``pip_audit.md`` has the same as a table. ``status``: ``clean`` (every package checked,
none vulnerable), ``vulnerable``, ``incomplete`` (some packages could not be checked), ``unaudited`` (none
could), ``unavailable`` (no report).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from zadanie4.evaluation.bench.serving_setup import executable

OUT_JSON = Path("artifacts") / "reliability" / "pip_audit.json"
PYPI_PROJECT_JSON = "https://pypi.org/pypi/{name}/json"
ProjectFetcher = Callable[[str], Mapping[str, Any] | None]  # project JSON of a package; None when unavailable
EXIT_VULNERABLE = 1  # pip-audit's exit status when it found vulnerabilities (and also on some errors)


def pinned_requirements(packages: Sequence[str]) -> list[str]:
    """``name==installed version`` for each package; raises ``PackageNotFoundError`` for one not installed."""
    return [f"{name}=={metadata.version(name)}" for name in packages]


def audit_command(output: Path, requirements_file: Path | None = None, *, timeout_s: int = 30) -> list[str]:
    """The pip-audit argv: the whole environment, or a pinned requirements file without resolving deps."""
    command = [
        executable("pip-audit"),
        "--format",
        "json",
        "--output",
        str(output),
        "--progress-spinner",
        "off",
        "--aliases",
        "on",
        "--desc",
        "off",
        "--timeout",
        str(timeout_s),
    ]
    if requirements_file is None:
        return [*command, "--skip-editable"]
    return [*command, "--requirement", str(requirements_file), "--no-deps", "--disable-pip"]


def summarize(raw: Mapping[str, Any]) -> dict[str, Any]:
    """pip-audit's JSON -> counts and one row per (package, vulnerability)."""
    vulnerabilities = []
    skipped = []
    dependencies = raw.get("dependencies", [])
    for dep in dependencies:
        if "skip_reason" in dep:
            skipped.append(f"{dep['name']}: {dep['skip_reason']}")
            continue
        for vuln in dep.get("vulns", []):
            vulnerabilities.append(
                {
                    "package": dep["name"],
                    "version": dep.get("version"),
                    "id": vuln["id"],
                    "aliases": list(vuln.get("aliases", [])),
                    "fix_versions": list(vuln.get("fix_versions", [])),
                    "source": "pip-audit",
                }
            )
    return _audit_summary(len(dependencies) - len(skipped), vulnerabilities, skipped)


def _audit_summary(audited: int, vulnerabilities: list[dict[str, Any]], skipped: list[str]) -> dict[str, Any]:
    """Status and counts of an audit. "clean" only when every package was checked: a package PyPI does
    not know (e.g. a version installed from a local wheel index) is skipped by pip-audit, which then still
    prints "No known vulnerabilities"."""
    status = "vulnerable" if vulnerabilities else "clean" if not skipped else "incomplete" if audited else "unaudited"
    return {
        "status": status,
        "packages_audited": audited,
        "vulnerable_packages": sorted({v["package"] for v in vulnerabilities}),
        "vulnerabilities": vulnerabilities,
        "skipped": skipped,
    }


def latest_release_vulnerabilities(
    name: str, installed: str, project: Mapping[str, Any] | None
) -> list[dict[str, Any]] | None:
    """PyPI's known vulnerabilities of ``name`` ``installed`` from its project JSON; None when they cannot be
    told (no JSON, or the installed version is not the latest release the JSON describes)."""
    if not project or str(project.get("info", {}).get("version")) != installed:
        return None
    return [
        {
            "package": name,
            "version": installed,
            "id": str(v.get("id")),
            "aliases": list(v.get("aliases") or []),
            "fix_versions": list(v.get("fixed_in") or []),
            "source": "pypi-latest",
        }
        for v in project.get("vulnerabilities") or []
        if not v.get("withdrawn")
    ]


def _installed_version(name: str) -> str | None:
    """pip-audit leaves the version out of a skipped package's entry: read it from this environment."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def fetch_project_json(name: str, *, timeout_s: float = 10.0) -> Mapping[str, Any] | None:
    """``GET /pypi/<name>/json``; None on any network or format error (the package then stays skipped)."""
    try:
        with urllib.request.urlopen(PYPI_PROJECT_JSON.format(name=name), timeout=timeout_s) as response:
            loaded = json.loads(response.read())
    except (OSError, ValueError):
        return None
    return loaded if isinstance(loaded, dict) else None


def check_skipped_against_latest(
    raw: Mapping[str, Any], summary: dict[str, Any], fetch: ProjectFetcher = fetch_project_json
) -> dict[str, Any]:
    """Audit the packages pip-audit skipped through their project JSON (see the module docstring); returns
    ``summary`` with those packages moved from ``skipped`` to audited and the status recomputed."""
    pending = [
        (str(d["name"]), version)
        for d in raw.get("dependencies", [])
        if "skip_reason" in d and (version := d.get("version") or _installed_version(str(d["name"])))
    ]
    if not pending:
        return summary
    with ThreadPoolExecutor(8) as pool:
        projects = list(pool.map(lambda item: fetch(item[0]), pending))
    checked, not_latest, unreachable = [], [], []
    vulnerabilities = list(summary["vulnerabilities"])
    for (name, version), project in zip(pending, projects, strict=True):
        found = latest_release_vulnerabilities(name, version, project)
        if found is not None:
            checked.append(name)
            vulnerabilities += found
        elif project is None:
            unreachable.append(name)
        else:
            not_latest.append(f"{name} {version} (latest {project.get('info', {}).get('version')})")
    done = set(checked)
    skipped = [reason for reason in summary["skipped"] if reason.split(":", 1)[0] not in done]
    return {
        **summary,
        **_audit_summary(summary["packages_audited"] + len(checked), vulnerabilities, skipped),
        "latest_release_check": {
            "checked": len(checked),
            "not_latest": not_latest,
            "unreachable": unreachable,
        },
    }


def run_audit(out_json: Path = OUT_JSON, packages: Sequence[str] = (), *, timeout_s: int = 30) -> dict[str, Any]:
    """Run pip-audit, write ``out_json`` (+ ``.md``) and return the summary (see the module docstring)."""
    out_json.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="pip-audit-") as tmp:
        raw_path = Path(tmp) / "raw.json"
        requirements = None
        if packages:
            requirements = Path(tmp) / "requirements.txt"
            requirements.write_text("\n".join(pinned_requirements(packages)) + "\n")
        command = audit_command(raw_path, requirements, timeout_s=timeout_s)
        completed = subprocess.run(command, capture_output=True, text=True, check=False)
        raw = json.loads(raw_path.read_text()) if raw_path.is_file() and raw_path.stat().st_size else None
    shown_command = " ".join(["pip-audit", *command[1:]]).replace(str(raw_path), "<raw.json>")
    if requirements is not None:
        shown_command = shown_command.replace(str(requirements), "<" + " ".join(pinned_requirements(packages)) + ">")
    result: dict[str, Any] = {
        "ran_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shown_command,
        "scope": "packages: " + ", ".join(packages) if packages else "whole environment (editable project skipped)",
        "pip_audit_exit_code": completed.returncode,
    }
    if raw is None or completed.returncode not in (0, EXIT_VULNERABLE):
        # No report: typically PyPI unreachable. Say so; never turn it into "no vulnerabilities".
        message = (completed.stderr or completed.stdout).strip().splitlines()
        result.update({"status": "unavailable", "error": " ".join(message[-3:])[:2000] or "pip-audit wrote no report"})
    else:
        result.update(check_skipped_against_latest(raw, summarize(raw)))
    out_json.write_text(json.dumps(result, indent=2) + "\n")
    out_json.with_suffix(".md").write_text(markdown(result))
    return result


def markdown(result: Mapping[str, Any]) -> str:
    lines = [
        "# Dependency audit (pip-audit)",
        "",
        f"{result['ran_at']}: `{result['command']}` ({result['scope']}) -> **{result['status']}**",
        "",
    ]
    if result["status"] == "unavailable":
        return "\n".join([*lines, f"pip-audit could not produce a report: {result['error']}", ""])
    lines.append(
        f"{result['packages_audited']} packages audited, {len(result['skipped'])} skipped (not auditable), "
        f"{len(result['vulnerabilities'])} known vulnerabilities in {len(result['vulnerable_packages'])} packages."
    )
    latest = result.get("latest_release_check")
    if latest:
        lines += [
            "",
            f"Of the packages pip-audit could not audit, {latest['checked']} are at their latest release and were "
            f"checked against PyPI's project JSON; {len(latest['not_latest'])} are older than the latest release "
            f"(not auditable here), {len(latest['unreachable'])} unreachable.",
        ]
    if result["skipped"]:
        lines += ["", "Skipped:", *(f"- {reason}" for reason in result["skipped"])]
    if result["vulnerabilities"]:
        lines += ["", "| package | version | id | aliases | fixed in | source |", "|---|---|---|---|---|---|"]
        for v in result["vulnerabilities"]:
            lines.append(
                f"| {v['package']} | {v['version']} | {v['id']} | {', '.join(v['aliases'])} | "
                f"{', '.join(v['fix_versions']) or '-'} | {v.get('source', 'pip-audit')} |"
            )
    return "\n".join([*lines, ""])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m zadanie4.evaluation.reliability.dependency_audit", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--out", type=Path, default=OUT_JSON, help="JSON report (default %(default)s)")
    parser.add_argument("--packages", nargs="*", default=[], help="audit only these installed packages")
    parser.add_argument("--timeout", type=int, default=30, help="socket timeout of each PyPI request, s")
    args = parser.parse_args(argv)
    result = run_audit(args.out, args.packages, timeout_s=args.timeout)
    if result["status"] == "unavailable":
        print(f"pip-audit unavailable: {result['error']}", file=sys.stderr)
        return 2
    print(
        f"{result['status']}: {result['packages_audited']} packages audited, {len(result['skipped'])} skipped, "
        f"{len(result['vulnerabilities'])} known vulnerabilities ({', '.join(result['vulnerable_packages']) or 'none'})"
        f" -> {args.out}"
    )
    return 0 if result["status"] == "clean" else 1


if __name__ == "__main__":
    sys.exit(main())
