"""Open Job Description templates in: decode, validate and expand them into the farm's JobSpec.

A template (``jobtemplate-2023-09``) is decoded, its parameter values checked and the job
created with ``openjd-model``, the reference implementation, so every rule of the
specification (parameter spaces with ranges, lists, ``*`` products and ``(A, B)``
associations, format strings, step dependencies, embedded files) means what it says there.
Each step becomes a ``command`` layer whose frames are the step's tasks (frame *n* runs the
*n*-th task of the parameter space) and which waits for the whole of the steps it depends
on. Its ``hostRequirements`` become the layer's requirements; what the farm cannot honour is
refused here with the reason, never left to wait forever.

The workers rebuild the same job from the stored template and values
(:mod:`scheduler.executors.command`) and run each task in an ``openjd-sessions`` session.
"""

from __future__ import annotations

import math
import platform
import re
from collections.abc import Mapping
from typing import Any

from farm import schemas
from farm.errors import InvalidSpec
from farm.vocab import LayerKind, Requirements

MAX_TEMPLATE_BYTES = 1 << 20
"""A template larger than this is refused: templates describe work, they do not carry data."""
DEFAULT_GPU_KIND = "nvidia-h100"
"""The accelerator an ``amount.worker.gpu`` asks for unless ``delta:attr.accelerator`` names one."""
ACCELERATOR_ATTRIBUTE = "delta:attr.accelerator"
"""A template's way to name the accelerator kind (``anyOf: [nvidia-h100]``, ``[ascend-910b]``)."""
_SLUG = re.compile(r"[^A-Za-z0-9_.-]+")


def decode_template(document: str | Mapping[str, Any]) -> dict[str, Any]:
    """A template given as YAML or JSON text (or already decoded) as a plain dict.

    Raises:
        InvalidSpec: not YAML or JSON, too big, or not a mapping.
    """
    from openjd.model import DecodeValidationError, DocumentType, document_string_to_object

    if isinstance(document, Mapping):
        return dict(document)
    if len(document.encode()) > MAX_TEMPLATE_BYTES:
        raise InvalidSpec(
            f"template: over {MAX_TEMPLATE_BYTES:,} bytes; keep data out of the template",
            field="template",
        )
    kind = DocumentType.JSON if document.lstrip().startswith("{") else DocumentType.YAML
    try:
        return document_string_to_object(document=document, document_type=kind)
    except DecodeValidationError as exc:
        raise InvalidSpec(f"template: {_first_line(exc)}", field="template") from exc


def build_job(source: schemas.OpenJDSource) -> tuple[list[Any], Any, Any]:
    """The ``openjd.model`` job (with its symbol tables) that ``source`` describes, with the
    environment templates and the job parameter values a session of it needs.

    Raises:
        InvalidSpec: the template or a parameter value breaks the specification (the reason
            named, as openjd-model words it).
    """
    from pathlib import Path

    from openjd.model import (
        DecodeValidationError,
        create_job_with_symbol_tables,
        decode_environment_template,
        decode_job_template,
        preprocess_job_parameters,
    )

    _check_no_cycle(source.template)
    try:
        template = decode_job_template(template=source.template)
    except DecodeValidationError as exc:
        raise InvalidSpec(f"template: {_first_line(exc)}", field="template") from exc
    except (IndexError, KeyError, TypeError, AttributeError) as exc:  # openjd-model's own slips
        raise InvalidSpec(
            f"template: not a valid job template ({type(exc).__name__} while reading it)",
            field="template",
        ) from exc
    try:
        environments = [decode_environment_template(template=e) for e in source.environments]
    except DecodeValidationError as exc:
        raise InvalidSpec(f"environments: {_first_line(exc)}", field="environments") from exc
    try:
        values = preprocess_job_parameters(
            job_template=template,
            job_parameter_values=dict(source.parameters),
            job_template_dir=Path(),
            current_working_dir=Path(),
            allow_job_template_dir_walk_up=True,
            environment_templates=environments,
        )
        built = create_job_with_symbol_tables(
            job_template=template, job_parameter_values=values, environment_templates=environments
        )
    except (DecodeValidationError, ValueError) as exc:
        raise InvalidSpec(f"parameters: {_first_line(exc)}", field="parameters") from exc
    return environments, values, built


def to_job_spec(
    source: schemas.OpenJDSource,
    *,
    shot_id: int,
    name: str | None = None,
    priority: int = 50,
) -> schemas.JobSpec:
    """The farm's job for a template and its parameter values: one command layer per step,
    or the farm's own layers where the steps are (:mod:`farm.openjd_layers`).

    Raises:
        InvalidSpec: the template is not valid OpenJD, a value is missing or out of its
            constraints, or a step asks for something the farm cannot honour.
    """
    from openjd.model import StepParameterSpaceIterator

    from farm.openjd_layers import from_template, is_native_step

    _, values, built = build_job(source)
    job = built.job
    if any(is_native_step(step) for step in source.template.get("steps", [])):
        return from_template(
            source,
            job,
            values,
            shot_id=shot_id,
            name=name or _slug(job.name, "job"),
            priority=priority,
        )
    layer_names = _layer_names([step.name for step in job.steps])
    layers = []
    for step in job.steps:
        tasks = len(StepParameterSpaceIterator(space=step.parameterSpace))
        depends = tuple(layer_names[d.dependsOn] for d in step.dependencies or ())
        layers.append(
            schemas.LayerSpec(
                name=layer_names[step.name],
                kind=LayerKind.COMMAND,
                depends_on=depends,
                wait_for="layer",
                openjd_step=step.name,
                task_count=tasks,
                requirements=requirements(step.name, step.hostRequirements),
            )
        )
    longest = max(layer.task_count or 1 for layer in layers)
    try:
        return schemas.JobSpec(
            name=name or _slug(job.name, "job"),
            shot_id=shot_id,
            frames=schemas.FrameRange(first=1, last=longest),
            layers=tuple(layers),
            openjd=source,
            priority=priority,
        )
    except ValueError as exc:  # a dependency cycle, named by the spec's own check
        message = str(exc).split("\n")[1] if "\n" in str(exc) else str(exc)
        raise InvalidSpec(f"template: {message.strip()}", field="template") from exc


def requirements(step: str, host: Any) -> Requirements:
    """A step's ``hostRequirements`` as the farm's requirements.

    ``amount.worker.vcpu`` → cores, ``amount.worker.memory`` (MiB) → memory,
    ``amount.worker.gpu`` → accelerators (of the kind ``delta:attr.accelerator`` names, else
    NVIDIA H100), ``amount.worker.gpu.memory`` (MiB) → accelerator memory, any other
    ``amount.NAME`` → licence ``NAME``; ``attr.worker.os.family`` must allow linux and
    ``attr.worker.cpu.arch`` this farm's architecture. Anything else is refused by name.
    """
    if host is None:
        return Requirements()
    values: dict[str, Any] = {}
    licences: list[str] = []
    kind: str | None = None
    for attribute in host.attributes or ():
        allowed = [v.lower() for v in (attribute.anyOf or attribute.allOf or [])]
        name = attribute.name.lower()
        if name == "attr.worker.os.family":
            _require(step, name, allowed, "linux")
        elif name == "attr.worker.cpu.arch":
            _require(step, name, allowed, _arch())
        elif name == ACCELERATOR_ATTRIBUTE:
            if attribute.allOf and len(attribute.allOf) > 1:
                raise _cannot(step, f"{name} allOf {attribute.allOf}: a node has one kind")
            kind = allowed[0]
        else:
            raise _cannot(step, f"the attribute {attribute.name}")
    for amount in host.amounts or ():
        name = amount.name.lower()
        low = float(amount.min or 0)
        if name == "amount.worker.vcpu":
            values["cores"] = max(1, math.ceil(low))
        elif name == "amount.worker.memory":
            values["memory_gb"] = low / 1024 if low > 0 else None
        elif name == "amount.worker.gpu":
            values["accelerator_count"] = math.ceil(low)
        elif name == "amount.worker.gpu.memory":
            values["accelerator_memory_gb"] = low / 1024 if low > 0 else None
        elif name.startswith("amount.worker."):
            raise _cannot(step, f"the amount {amount.name}")
        elif ":" not in name:
            if low > 1:
                raise _cannot(step, f"{amount.name} min {low:g}: a task holds one licence")
            if low > 0:
                licences.append(name.removeprefix("amount."))
        else:
            raise _cannot(step, f"the amount {amount.name}")
    if values.get("accelerator_count") or values.get("accelerator_memory_gb") or kind:
        values["accelerator"] = kind or DEFAULT_GPU_KIND
        values["accelerator_count"] = max(1, values.get("accelerator_count") or 0)
    try:
        return Requirements(**values, licences=tuple(licences))
    except ValueError as exc:
        raise InvalidSpec(
            f"step {step!r}: hostRequirements: {_first_line(exc)}", field="template"
        ) from exc


def _check_no_cycle(template: Mapping[str, Any]) -> None:
    """Refuse steps that depend on each other in a loop, naming it (openjd-model 0.14 stumbles
    on such a template instead of saying so)."""
    steps = template.get("steps")
    if not isinstance(steps, list):
        return
    edges: dict[str, list[str]] = {}
    for step in steps:
        if isinstance(step, Mapping) and isinstance(step.get("name"), str):
            deps = step.get("dependencies") or []
            edges[step["name"]] = [
                d["dependsOn"] for d in deps if isinstance(d, Mapping) and "dependsOn" in d
            ]
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            loop = [*path[path.index(name) :], name]
            raise InvalidSpec(
                f"template: steps depend on each other in a cycle: {' -> '.join(loop)}",
                field="template",
            )
        if name in done or name not in edges:
            return
        for dep in edges[name]:
            visit(dep, [*path, name])
        done.add(name)

    for name in edges:
        visit(name, [])


def _require(step: str, name: str, allowed: list[str], ours: str) -> None:
    if allowed and ours not in allowed:
        raise _cannot(step, f"{name} {allowed}: the farm's workers are {ours}")


def _cannot(step: str, what: str) -> InvalidSpec:
    return InvalidSpec(
        f"step {step!r}: hostRequirements: the farm cannot honour {what}", field="template"
    )


def _arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "aarch64": "arm64"}.get(machine, machine)


def _layer_names(steps: list[str]) -> dict[str, str]:
    """Farm layer names for step names (which may hold spaces): slugs, made unique."""
    names: dict[str, str] = {}
    used: set[str] = set()
    for step in steps:
        base = _slug(step, "step")[:60]
        name, n = base, 2
        while name.lower() in used:
            name, n = f"{base}-{n}", n + 1
        used.add(name.lower())
        names[step] = name
    return names


def _slug(text: str, fallback: str) -> str:
    slug = _SLUG.sub("_", text).strip("_.-")[:64]
    return slug if slug and slug[0].isalnum() else f"{fallback}_{slug}"[:64].rstrip("_")


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return "; ".join(lines[:3])[:500] or type(exc).__name__
