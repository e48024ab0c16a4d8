"""JUnit XML for ``reproduce --junit``: one test case per step, the format CI systems display.

A model given as a URI is named by that URI, and its provenance (the resolved version, run and
tracking server) is recorded twice: as ``<properties>`` of its suite, for tools that read them,
and in ``<system-out>``, which GitHub's and GitLab's report views show."""

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
        source = _source_properties(report)
        if source:
            properties = ET.SubElement(suite, "properties")
            for name, value in source.items():
                ET.SubElement(properties, "property", name=name, value=value)
        for step in report.steps:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=f"envbuild.reproduce.{_case_name(report)}",
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
        text = [f"{name}: {value}" for name, value in source.items()]
        if report.drift:
            text.append("drift:")
            text += [
                f"  {d['name']}: logged {d['logged'] or '-'}, now {d['installed'] or '-'}"
                for d in report.drift
            ]
        if text:
            out = ET.SubElement(suite, "system-out")
            out.text = "\n".join(text)
    ET.indent(suites)
    return ET.tostring(suites, encoding="unicode", xml_declaration=True) + "\n"


def _source_properties(report: Report) -> dict[str, str]:
    """A URI's provenance as ``envbuild.model.*`` names (the image labels' names), plus the
    resolved reference and the alias; empty for a folder."""
    source = report.source
    if source is None or source.is_local:
        return {}
    values = {
        **source.labels(),
        "envbuild.model.resolved-uri": source.resolved_uri,
        "envbuild.model.alias": source.alias,
    }
    return {name: value for name, value in values.items() if value}


def _case_name(report: Report) -> str:
    """The model's name in a test case's class: the folder's name, or for a URI its registered
    name and version, else its run id."""
    source = report.source
    if source is None or source.is_local:
        return Path(report.model).name
    if source.registered_name:
        return f"{source.registered_name}-v{source.version or '?'}"
    return source.run_id or source.model_id or Path(report.model).name


def write_junit(path: Path, reports: list[Report]) -> None:
    atomic_write(path, junit_xml(reports))
