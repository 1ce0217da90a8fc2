"""Audit the pinned requirements for known vulnerabilities with pip-audit (`make lint`).

pip-audit asks PyPI's JSON API for advisories. Where that data cannot be reached (a
machine that sees only a package mirror), every dependency comes back "not found" and
nothing was audited: that is said in one plain line and does not fail the lint, since a
missing service is not a finding. Any vulnerability found fails it, naming each one.
"""

from __future__ import annotations

import json
import subprocess
import sys

REQUIREMENTS = ("requirements.txt", "requirements-dev.txt")


def main(pip_audit: str) -> int:
    command = [pip_audit, "--disable-pip", "--no-deps", "--progress-spinner", "off",
               "--format", "json"]
    for requirements in REQUIREMENTS:
        command += ["-r", requirements]
    finished = subprocess.run(command, capture_output=True, text=True, check=False)
    try:
        report = json.loads(finished.stdout)
    except json.JSONDecodeError:
        last_line = (finished.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"pip-audit: advisory data not reachable, dependencies not audited ({last_line})")
        return 0
    dependencies = report.get("dependencies", [])
    skipped = [dep for dep in dependencies if dep.get("skip_reason")]
    audited = [dep for dep in dependencies if not dep.get("skip_reason")]
    findings = [(dep["name"], dep["version"], vuln) for dep in audited
                for vuln in dep.get("vulns", [])]
    for name, version, vuln in findings:
        fixes = ", ".join(vuln.get("fix_versions", [])) or "no fixed release"
        print(f"pip-audit: {name} {version}: {vuln['id']} (fixed in: {fixes})")
    if not audited:
        print(f"pip-audit: advisory data not reachable from this machine, "
              f"{len(skipped)} pinned dependencies not audited")
        return 0
    if skipped:
        names = ", ".join(dep["name"] for dep in skipped)
        print(f"pip-audit: not audited (not found in the advisory data): {names}")
    if findings:
        print(f"pip-audit: {len(findings)} known vulnerabilities in the pinned requirements")
        return 1
    print(f"pip-audit: {len(audited)} pinned dependencies, no known vulnerabilities")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "pip-audit"))
