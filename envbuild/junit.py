"""JUnit XML for ``reproduce --junit``: one test case per step, the format CI systems display."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from envbuild.files import atomic_write
from envbuild.reproduction import FAILED, SKIPPED, Report


def junit_xml(reports: list[Report]) -> str:
    """One ``<testsuite>`` per model, one ``<testcase>`` per step."""
    suites = ET.Element("testsuites", name="envbuild reproduce")
    for report in reports:
        failures = sum(s.status == FAILED for s in report.steps)
        skipped = sum(s.status == SKIPPED for s in report.steps)
        suite = ET.SubElement(
            suites,
            "testsuite",
            name=f"envbuild reproduce {report.model}",
            tests=str(len(report.steps)),
            failures=str(failures),
            skipped=str(skipped),
            errors="0",
            time=f"{sum(s.seconds for s in report.steps):.3f}",
        )
        for step in report.steps:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"envbuild.reproduce.{Path(report.model).name}",
                name=step.name,
                time=f"{step.seconds:.3f}",
            )
            if step.status == FAILED:
                node = ET.SubElement(
                    case, "failure", message=step.message, type=f"exit {step.exit_code}"
                )
                node.text = "\n".join(
                    filter(None, [step.message, step.hint and f"hint: {step.hint}"])
                )
            elif step.status == SKIPPED:
                ET.SubElement(case, "skipped", message=step.message)
        if report.drift:
            out = ET.SubElement(suite, "system-out")
            out.text = "drift:\n" + "\n".join(
                f"  {d['name']}: logged {d['logged'] or '-'}, now {d['installed'] or '-'}"
                for d in report.drift
            )
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(path: Path, reports: list[Report]) -> None:
    atomic_write(path, junit_xml(reports))
