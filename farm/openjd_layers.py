"""The farm's own layers as Open Job Description steps: one model for templates and job specs.

A particle job (sim -> render -> assemble) can be written as an OpenJD template as well as a
job spec, and ``farm template SPEC.json`` writes one from the other. A step is one of the farm's
own layers when its ``onRun`` command is ``delta-layer``; its embedded file ``Layer`` holds the
layer's options (the job spec's ``LayerSpec`` fields in YAML, less its name and dependencies,
which are the step's own). Its tasks are the layer's tasks: the ``Frame`` task parameter is the
frame, and a tiled layer's ``Tile`` parameter (``0`` to tiles - 1, ``Frame * Tile``) is the
tile, so a render of 8 frames in 4x4 tiles is a step of 128 tasks in both models. The job's
``Resolution`` (``WIDTHxHEIGHT``) and ``Camera`` (JSON) are job parameters, so ``-p`` changes
them at submit like any other.

Such steps run on the farm's own executors, not through ``openjd-sessions`` (``delta-layer`` is
a name the farm reads, not a program on the workers), and the farm keeps its own per-frame data
flow between them: frame f of a render starts when frame f of its sim is done, not after the
whole sim step, as the farm knows what a particle render reads. A template mixes them with
command steps only in a later version: it is refused, saying so.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml
from pydantic import ValidationError

from farm import schemas
from farm.camera import Camera
from farm.errors import InvalidSpec, invalid_spec_from_errors

DELTA_COMMAND = "delta-layer"
"""The ``onRun`` command that marks a step as one of the farm's own layers."""
LAYER_FILE = "Layer"
"""The embedded file that holds the layer's options."""
FRAME, TILE = "Frame", "Tile"
_FORMAT = re.compile(r"\{\{\s*([A-Za-z]+)\.([A-Za-z0-9_.]+)\s*\}\}")
_STEP_FIELDS = ("name", "depends_on")
"""LayerSpec fields that come from the step itself, never from its ``Layer`` file."""


def is_native_step(step: Mapping[str, Any]) -> bool:
    """Whether a template step (as decoded) is one of the farm's own layers."""
    actions = (step.get("script") or {}).get("actions") or {}
    return (actions.get("onRun") or {}).get("command") == DELTA_COMMAND


def to_template(spec: schemas.JobSpec) -> dict[str, Any]:
    """A job spec of the farm's own layers as an OpenJD job template (``jobtemplate-2023-09``).

    Raises:
        InvalidSpec: the spec has command layers (they come from a template already) or waits
            for other jobs or assets (a template says that at submit: ``--after``).
    """
    if spec.openjd is not None:
        raise InvalidSpec("this job came from an OpenJD template already: use that", field="openjd")
    if spec.after_jobs or spec.after_assets:
        raise InvalidSpec(
            "a template does not name other jobs or assets: drop after_jobs and after_assets "
            "and give them at submit (farm submit --after JOB --after-asset ID:N)",
            field="after_jobs",
        )
    parameters: list[dict[str, Any]] = [
        {"name": "Frames", "type": "STRING", "default": f"{spec.frames.first}-{spec.frames.last}"}
    ]
    if spec.resolution is not None:
        size = f"{spec.resolution.width}x{spec.resolution.height}"
        parameters.append({"name": "Resolution", "type": "STRING", "default": size})
    if spec.camera is not None:
        parameters.append(
            {"name": "Camera", "type": "STRING", "default": spec.camera.model_dump_json()}
        )
    steps = []
    for layer in spec.layers:
        count = schemas.tiles_per_frame(layer, spec.resolution) if spec.resolution else 1
        space: dict[str, Any] = {
            "taskParameterDefinitions": [
                {"name": FRAME, "type": "INT", "range": "{{Param.Frames}}"}
            ]
        }
        args = ["{{Task.File." + LAYER_FILE + "}}", "{{Task.Param.Frame}}"]
        if layer.tiles is not None:
            space["taskParameterDefinitions"].append(
                {"name": TILE, "type": "INT", "range": f"0-{count - 1}" if count > 1 else [0]}
            )
            space["combination"] = f"{FRAME} * {TILE}"
            args.append("{{Task.Param.Tile}}")
        options = layer.model_dump(mode="json", exclude_defaults=True, exclude=set(_STEP_FIELDS))
        options["kind"] = layer.kind.value
        step: dict[str, Any] = {"name": layer.name}
        if layer.depends_on:
            step["dependencies"] = [{"dependsOn": name} for name in layer.depends_on]
        step |= {
            "parameterSpace": space,
            "script": {
                "embeddedFiles": [
                    {
                        "name": LAYER_FILE,
                        "type": "TEXT",
                        "data": yaml.safe_dump(options, default_flow_style=False, sort_keys=True),
                    }
                ],
                "actions": {"onRun": {"command": DELTA_COMMAND, "args": args}},
            },
        }
        steps.append(step)
    return {
        "specificationVersion": "jobtemplate-2023-09",
        "name": spec.name,
        "parameterDefinitions": parameters,
        "steps": steps,
    }


def template_yaml(template: Mapping[str, Any]) -> str:
    """A template (:func:`to_template`) as YAML a person reads: keys in the template's order,
    each layer's options as a literal block."""

    class Dumper(yaml.SafeDumper):
        pass

    def text(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
        style = "|" if "\n" in value else None
        return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)

    Dumper.add_representer(str, text)
    return yaml.dump(dict(template), Dumper=Dumper, sort_keys=False, width=100)


def from_template(
    source: schemas.OpenJDSource,
    job: Any,
    values: Mapping[str, Any],
    *,
    shot_id: int,
    name: str,
    priority: int,
) -> schemas.JobSpec:
    """The job spec of a template whose steps are the farm's own layers.

    ``job`` is the job ``openjd-model`` created from the template (its parameter spaces are
    expanded there, so ranges, lists and products mean what the specification says), and
    ``values`` its job parameter values.

    Raises:
        InvalidSpec: naming the step and what to fix.
    """
    from openjd.model import StepParameterSpaceIterator

    raw_steps = {step["name"]: step for step in source.template.get("steps", [])}
    mixed = [s for s in raw_steps.values() if not is_native_step(s)]
    if mixed:
        raise InvalidSpec(
            f"step {mixed[0]['name']!r}: a template mixes the farm's own layers "
            f"({DELTA_COMMAND}) with command steps; submit them as two jobs chained with "
            "--after",
            field="template",
        )
    resolution = _resolution(values)
    camera = _camera(values)
    layers: dict[str, schemas.LayerSpec] = {}
    frames: dict[str, list[int]] = {}
    for step in job.steps:
        raw = raw_steps[step.name]
        layer = _layer(step.name, raw, values)
        space = StepParameterSpaceIterator(space=step.parameterSpace)
        most = schemas.MAX_FRAMES_PER_JOB * (schemas.MAX_TILES_PER_FRAME if layer.tiles else 1)
        if len(space) > most:  # counted without expanding: 10^10 tasks must not be listed
            raise InvalidSpec(
                f"step {step.name!r}: {len(space):,} tasks; a layer has at most "
                f"{schemas.MAX_FRAMES_PER_JOB:,} frames"
                + (f" of at most {schemas.MAX_TILES_PER_FRAME:,} tiles" if layer.tiles else ""),
                field="template",
            )
        frames[step.name] = _frames_and_tiles(step.name, layer, list(space), resolution)
        layers[step.name] = layer
    first = next(iter(frames.values()))
    for step_name, numbers in frames.items():
        if numbers != first:
            raise InvalidSpec(
                f"step {step_name!r}: its Frame values differ from step "
                f"{next(iter(frames))!r}'s; the farm's own layers of one job share its frames",
                field="template",
            )
    try:
        return schemas.JobSpec(
            name=name,
            shot_id=shot_id,
            frames=schemas.FrameRange(first=first[0], last=first[-1]),
            resolution=resolution,
            camera=camera,
            layers=tuple(_in_dependency_order(layers)),
            priority=priority,
        )
    except ValidationError as exc:
        error = invalid_spec_from_errors(list(exc.errors()))
        raise InvalidSpec(f"template: {error.message}", field="template") from exc


def _layer(step: str, raw: Mapping[str, Any], values: Mapping[str, Any]) -> schemas.LayerSpec:
    files = {f.get("name"): f for f in (raw.get("script") or {}).get("embeddedFiles") or ()}
    if LAYER_FILE not in files:
        raise InvalidSpec(
            f"step {step!r}: a {DELTA_COMMAND} step needs its layer's options in an embedded "
            f"file named {LAYER_FILE!r} (kind: particle_render, tiles: ...)",
            field="template",
        )
    data = _with_parameters(step, str(files[LAYER_FILE].get("data") or ""), values)
    try:
        options = yaml.safe_load(data)
    except yaml.YAMLError as exc:
        raise InvalidSpec(
            f"step {step!r}: file {LAYER_FILE!r} is not YAML", field="template"
        ) from exc
    if not isinstance(options, dict):
        raise InvalidSpec(
            f"step {step!r}: file {LAYER_FILE!r} must be a mapping of layer options",
            field="template",
        )
    given = sorted(set(options) & set(_STEP_FIELDS))
    if given:
        raise InvalidSpec(
            f"step {step!r}: file {LAYER_FILE!r} sets {', '.join(given)}: the step's own name "
            "and dependencies say that",
            field="template",
        )
    depends = tuple(d["dependsOn"] for d in raw.get("dependencies") or ())
    try:
        return schemas.LayerSpec.model_validate({**options, "name": step, "depends_on": depends})
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(p) for p in error["loc"]) or "options"
        raise InvalidSpec(
            f"step {step!r}: file {LAYER_FILE!r}: {where}: {error['msg']}", field="template"
        ) from exc


def _with_parameters(step: str, data: str, values: Mapping[str, Any]) -> str:
    """The ``Layer`` file with its ``{{Param.X}}`` (and ``{{RawParam.X}}``) format strings
    replaced by the job's parameter values, e.g. ``input_asset_version: {{Param.Seed}}``."""

    def value(match: re.Match[str]) -> str:
        scope, name = match.group(1), match.group(2)
        if scope not in ("Param", "RawParam") or name not in values:
            raise InvalidSpec(
                f"step {step!r}: file {LAYER_FILE!r} uses {{{{{scope}.{name}}}}}; it may use "
                "the job's parameters only ({{Param.NAME}})",
                field="template",
            )
        return str(values[name].value)

    return _FORMAT.sub(value, data)


def _frames_and_tiles(
    step: str,
    layer: schemas.LayerSpec,
    tasks: list[Any],
    resolution: schemas.Resolution | None,
) -> list[int]:
    """The step's frames, after checking its tasks are exactly frames x tiles."""
    names = set(tasks[0]) if tasks else set()
    wanted = {FRAME, TILE} if layer.tiles is not None else {FRAME}
    if names != wanted:
        raise InvalidSpec(
            f"step {step!r}: its task parameters must be {' and '.join(sorted(wanted))} "
            f"(a {layer.kind} layer{' with tiles' if layer.tiles else ''}), not "
            f"{', '.join(sorted(names)) or 'none'}",
            field="template",
        )
    frames = sorted(_ints(step, FRAME, tasks))
    if frames != list(range(frames[0], frames[-1] + 1)):
        raise InvalidSpec(
            f"step {step!r}: Frame values must be one range without gaps, e.g. 1001-1100",
            field="template",
        )
    count = 1
    if layer.tiles is not None:
        count = schemas.tiles_per_frame(layer, resolution) if resolution else 0
        tiles = sorted(_ints(step, TILE, tasks))
        if tiles != list(range(count)):
            raise InvalidSpec(
                f"step {step!r}: Tile must run 0-{count - 1}: its tiles make {count} a frame",
                field="template",
            )
    if len(tasks) != len(frames) * count:
        raise InvalidSpec(
            f"step {step!r}: every frame runs every tile: combine them as '{FRAME} * {TILE}'",
            field="template",
        )
    return frames


def _ints(step: str, name: str, tasks: list[Any]) -> set[int]:
    try:
        return {int(task[name].value) for task in tasks}
    except (TypeError, ValueError) as exc:
        raise InvalidSpec(
            f"step {step!r}: task parameter {name} must be INT (whole numbers)",
            field="template",
        ) from exc


def _resolution(values: Mapping[str, Any]) -> schemas.Resolution | None:
    value = values.get("Resolution")
    if value is None:
        return None
    text = str(value.value)
    try:
        width, height = (int(n) for n in text.lower().split("x"))
        return schemas.Resolution(width=width, height=height)
    except (ValueError, ValidationError) as exc:
        raise InvalidSpec(
            f"parameters: Resolution {text!r}: give WIDTHxHEIGHT, e.g. 1920x1080",
            field="parameters",
        ) from exc


def _camera(values: Mapping[str, Any]) -> Camera | None:
    value = values.get("Camera")
    if value is None:
        return None
    try:
        return Camera.model_validate_json(str(value.value))
    except ValidationError as exc:
        error = exc.errors()[0]
        raise InvalidSpec(
            f"parameters: Camera: {'.'.join(str(p) for p in error['loc']) or 'JSON'}: "
            f"{error['msg']}",
            field="parameters",
        ) from exc


def _in_dependency_order(layers: Mapping[str, schemas.LayerSpec]) -> list[schemas.LayerSpec]:
    """Layers with each after those it depends on (a template may list steps in any order;
    cycles were refused with their names before this)."""
    done: dict[str, schemas.LayerSpec] = {}

    def visit(name: str) -> None:
        if name in done:
            return
        for dep in layers[name].depends_on:
            if dep in layers:
                visit(dep)
        done[name] = layers[name]

    for name in layers:
        visit(name)
    return list(done.values())
