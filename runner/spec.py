"""The study file: its schema (pydantic) and its loading, with errors that name file, line, key.

A study file declares datasets, models and study entries (a kind applied to some models on a
dataset, with params and an optional ``sweep:`` grid). ``${VAR}`` anywhere in a string is
replaced by the environment variable ``VAR`` (``${VAR:-default}`` gives a default).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    ValidationError,
    field_validator,
    model_validator,
)

from runner.kinds.base import Seed
from runner.kinds.train import TrainParams

#: A path in a study file: never empty (an empty path would silently mean the current folder).
PathStr = Annotated[str, Field(min_length=1)]


class SpecModel(BaseModel):
    """Base of every study-file object: unknown keys are errors, floats are finite."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


# ------------------------------------------------------------------------------ datasets


class Subset(SpecModel):
    """A deterministic subset of a dataset; part of the dataset's identity."""

    per_class: int | None = Field(None, ge=1, description="keep at most this many per class")
    limit: int | None = Field(None, ge=1, description="then keep at most this many in all")
    seed: Seed = Field(0, description="seed of the random choice")


class SyntheticDataset(SpecModel):
    """The offline synthetic world: shapes over textured backgrounds, in ImageNet layout."""

    kind: Literal["synthetic"]
    split: Literal["train", "val"] = Field("train", description="which split of the world")
    classes: int = Field(10, ge=2, le=10, description="number of shape classes")
    train_per_class: int = Field(300, ge=1, description="images per class in the train split")
    val_per_class: int = Field(60, ge=1, description="images per class in the val split")
    size: int = Field(64, ge=16, le=2048, description="image side in pixels")
    home_prob: float = Field(
        0.7, ge=0.0, le=1.0,
        description="probability that an image uses its class's home background family",
    )
    colour_prob: float = Field(
        0.0, ge=0.0, le=1.0,
        description="probability that a shape takes its class's home hue (else a random "
        "colour far from the background): objects have typical colours, as on ImageNet",
    )
    seed: Seed = Field(0, description="world seed: same seed, same images")
    corrupt: int = Field(0, ge=0, description="unreadable files planted per split (for tests)")
    cache: PathStr | None = Field(None, description="where to generate it (default ~/.cache)")
    subset: Subset | None = None


class ImagenetDataset(SpecModel):
    """A folder in ImageNet layout: class folders (WordNet ids) or flat + labels file."""

    kind: Literal["imagenet"]
    root: PathStr = Field(description="folder of class folders, or of images with `labels`")
    boxes: PathStr | None = Field(None, description="folder of PASCAL-VOC XML box files")
    labels: PathStr | None = Field(
        None, description="file of '<image> <class>' lines (flat layout)")
    classes: PathStr | None = Field(
        None, description="file of class ids, one per line, in label order (default: timm's "
        "ImageNet-1k order when the class folders are WordNet ids, else sorted folder names)"
    )
    subset: Subset | None = None


DatasetSpec = Annotated[SyntheticDataset | ImagenetDataset, Field(discriminator="kind")]


# -------------------------------------------------------------------------------- models


class PreprocessOverride(SpecModel):
    """Overrides of a model's own preprocessing config (users' checkpoints often need them)."""

    mean: tuple[float, float, float] | None = None
    std: tuple[PositiveFloat, PositiveFloat, PositiveFloat] | None = Field(
        None, description="per-channel std, each > 0 (inputs are divided by it)")
    size: int | None = Field(None, ge=8)
    crop_pct: float | None = Field(None, gt=0.0, le=1.0)
    interpolation: Literal["bilinear", "bicubic", "nearest"] | None = None


class TrainSpec(TrainParams):
    """Train the model inside the study; its checkpoint feeds every task using the model."""

    dataset: str = Field(description="name of the training dataset in `datasets:`")


class ZeroShotHead(SpecModel):
    """For CLIP: a classifier built from class-name prompts (text tower), to measure accuracy."""

    classnames: str = Field("imagenet", description="'imagenet' or a file, one name per line")
    templates: Literal["openai", "simple"] = "openai"


class ModelSpec(SpecModel):
    """A model entry: where it comes from and how to load it."""

    source: Literal["timm", "open_clip", "torchvision", "checkpoint"]
    name: str | None = Field(None, description="the library's model name (timm, open_clip, "
                             "torchvision)")
    pretrained: bool | str = Field(
        True, description="timm: true/false or a tag; open_clip: the pretrained tag "
        "('openai'); torchvision: true or a weights enum name ('IMAGENET1K_V1')"
    )
    weights: PathStr | None = Field(None, description="a local weights file instead of a download")
    arch: str | None = Field(None, description="checkpoint source: the timm architecture")
    path: PathStr | None = Field(None, description="checkpoint source: the weights file")
    num_classes: int | None = Field(None, ge=1)
    kwargs: dict[str, Any] = Field(default_factory=dict, description="constructor overrides")
    preprocess: PreprocessOverride | None = None
    zero_shot: ZeroShotHead | None = None
    train: TrainSpec | None = None

    @field_validator("name")
    @classmethod
    def _name_not_empty(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be empty")
        return v

    @model_validator(mode="after")
    def _source_fields(self) -> ModelSpec:
        if self.source == "checkpoint":
            if not self.arch or not self.path:
                raise ValueError("a `checkpoint` model needs `arch` and `path`")
        elif not self.name:
            raise ValueError(f"a `{self.source}` model needs `name`")
        return self


# ------------------------------------------------------------------------------- studies


class StudyEntry(SpecModel):
    """One kind applied to some models on a dataset; ``sweep`` makes a grid of tasks."""

    kind: str = Field(description="the study kind (`vitstudy kinds` lists them)")
    models: list[str] = Field(default_factory=list, description="names from `models:`")
    dataset: str | None = Field(None, description="a name from `datasets:`")
    params: dict[str, Any] = Field(default_factory=dict, description="the kind's params")
    sweep: dict[str, list[Any]] = Field(
        default_factory=dict, description="param -> list of values; one task per combination"
    )
    seed: Seed = Field(0, description="seed of the task's randomness; part of the task key")


#: Longest study name: it becomes a folder name under reports/ (file systems allow 255 bytes).
MAX_NAME_LENGTH = 100


class Study(SpecModel):
    """A study file."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=MAX_NAME_LENGTH,
                      description="the study's name, safe as a file name (letters, digits, "
                      "`_`, `.`, `-`; at most 100 characters); reports go to reports/<name>/")
    description: str | None = None
    datasets: dict[str, DatasetSpec] = Field(default_factory=dict)
    models: dict[str, ModelSpec] = Field(default_factory=dict)
    studies: list[StudyEntry] = Field(default_factory=list)


class LoadedStudy:
    """A validated study with where it came from (relative paths resolve against its folder)."""

    def __init__(self, study: Study, path: Path, lines: dict[tuple, int]) -> None:
        self.study = study
        self.path = path
        self.base_dir = path.parent
        self.lines = lines

    @property
    def name(self) -> str:
        return self.study.name

    def line_of(self, *key: Any) -> int | None:
        return _nearest_line(self.lines, key)


class SpecError(ValueError):
    """An invalid study file: says where (file, line, key) and what was expected."""

    def __init__(self, path: Path | str, line: int | None, key: str | None, message: str) -> None:
        self.path, self.line, self.key, self.message = str(path), line, key, message
        where = self.path + (f":{line}" if line else "")
        super().__init__(f"{where}: {key + ': ' if key else ''}{message}")


# -------------------------------------------------------------------------------- loading

#: Most tasks a study may expand to unless the command is given ``--max-tasks``: a sweep past it
#: is far more often a mistake (a list where a value was meant) than an intent.
MAX_TASKS = 10_000
#: Most values (YAML nodes) a study file may hold once its aliases are expanded: a 1 KB file of
#: nested aliases ("billion laughs") would otherwise take minutes and gigabytes to read.
MAX_YAML_NODES = 1_000_000
#: Keys whose values are paths: one that a variable makes empty is an error, not the cwd.
_PATH_KEYS = frozenset({"root", "boxes", "labels", "classes", "cache", "path", "weights"})

#: libyaml's loader when PyYAML was built with it (several times faster on big sweeps).
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load_study(path: str | Path, max_tasks: int = MAX_TASKS) -> LoadedStudy:
    """Read, interpolate and validate a study file; raise ``SpecError`` on any problem,
    including a study that expands to more than ``max_tasks`` tasks."""
    path = Path(path)
    lines, data = _parse_yaml(path, _read_text(path))
    if not isinstance(data, dict):
        raise SpecError(path, 1, None, "expected a mapping with `name`, `datasets`, `models` "
                        "and `studies` at the top of the file")
    data = _interpolate(path, data, lines, ())
    try:
        study = Study.model_validate(data)
    except ValidationError as e:
        raise _spec_error(path, lines, data, e) from None
    loaded = LoadedStudy(study, path.resolve(), lines)
    _check_task_count(loaded, max_tasks)
    _check_references(loaded)
    _resolve_dataset_paths(loaded)
    return loaded


def _resolve_dataset_paths(loaded: LoadedStudy) -> None:
    """Relative dataset paths are relative to the study file's folder, not the shell's."""
    for spec in loaded.study.datasets.values():
        fields = ("root", "boxes", "labels", "classes") if spec.kind == "imagenet" else ("cache",)
        for name in fields:
            value = getattr(spec, name)
            if value and not Path(value).expanduser().is_absolute():
                setattr(spec, name, str(loaded.base_dir / value))
            elif value:
                setattr(spec, name, str(Path(value).expanduser()))


def _read_text(path: Path) -> str:
    """The study file's text; SpecError if it cannot be read or is not UTF-8."""
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise SpecError(path, None, None, f"cannot read the study file ({e.strerror})") from e
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise SpecError(path, line, None, f"the study file is not UTF-8 text (byte "
                        f"0x{raw[e.start]:02x} at offset {e.start}); save it as UTF-8") from None


def _parse_yaml(path: Path, text: str) -> tuple[dict[tuple, int], Any]:
    """Parse YAML; also map every key path to its line (1-based), refusing duplicate keys and
    documents that aliases expand past ``MAX_YAML_NODES`` (checked before anything expands)."""
    try:
        node = yaml.compose(text, Loader=_Loader)
        if node is not None:
            _check_expansion(path, node, MAX_YAML_NODES)
        data = None if node is None else _Loader("").construct_document(node)
    except RecursionError:
        raise SpecError(path, None, None, "the YAML is nested too deeply to read") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(path, line, None, f"malformed YAML: {problem}") from None
    lines: dict[tuple, int] = {}
    if node is not None:
        _walk_lines(path, node, (), lines)
    return lines, data


def _node_children(node: yaml.Node) -> list[yaml.Node]:
    """A node's direct children (keys and values of a mapping, items of a sequence)."""
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


def expanded_size(root: yaml.Node, limit: int) -> int:
    """How many nodes ``root`` holds once every alias is expanded, computed without expanding
    (each distinct node is visited once). Raises ``ExpansionError`` as soon as the count
    passes ``limit``, or when an alias refers to a node that contains it."""
    sizes: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes[id(c)] for c in _node_children(node))
            if sizes[key] > limit:
                raise ExpansionError(node, f"expand the document past {limit:,} values (a "
                                     "study file may hold at most that many)")
        elif key in on_path:
            raise ExpansionError(node, "refer to a node that contains them (the document "
                                 "would never end)")
        elif key not in sizes:
            on_path.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in _node_children(node))
    return sizes[id(root)]


class ExpansionError(ValueError):
    """A YAML document whose aliases expand too far (or forever)."""

    def __init__(self, node: yaml.Node, what: str) -> None:
        self.line = node.start_mark.line + 1
        super().__init__(what)


def _check_expansion(path: Path, node: yaml.Node, limit: int) -> None:
    try:
        expanded_size(node, limit)
    except ExpansionError as e:
        raise SpecError(path, e.line, None, f"YAML aliases (`*name`) here {e}") from None


def _walk_lines(path: Path, node: yaml.Node, at: tuple, lines: dict[tuple, int]) -> None:
    lines.setdefault(at, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key_node, value_node in node.value:
            key = key_node.value
            if key in seen:
                raise SpecError(path, key_node.start_mark.line + 1, dotted(at + (key,)),
                                "duplicate key")
            seen.add(key)
            lines[at + (key,)] = key_node.start_mark.line + 1
            _walk_lines(path, value_node, at + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[at + (i,)] = item.start_mark.line + 1
            _walk_lines(path, item, at + (i,), lines)


def _interpolate(path: Path, value: Any, lines: dict[tuple, int], at: tuple) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string."""
    if isinstance(value, dict):
        return {k: _interpolate(path, v, lines, at + (k,)) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(path, v, lines, at + (i,)) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(m: re.Match) -> str:
        name, default = m.group(1), m.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise SpecError(path, _nearest_line(lines, at), dotted(at),
                        f"environment variable {name} is not set (write ${{{name}:-default}} "
                        "for a default)")

    result = _ENV.sub(substitute, value)
    if not result.strip() and at and at[-1] in _PATH_KEYS and _ENV.search(value):
        names = ", ".join(sorted({m.group(1) for m in _ENV.finditer(value)}))
        raise SpecError(path, _nearest_line(lines, at), dotted(at),
                        f"this path is empty once {value!r} is substituted (environment "
                        f"variable {names} is unset or empty); set it to the path (an empty "
                        "path would mean the current folder)")
    return result


def _nearest_line(lines: dict[tuple, int], key: tuple) -> int | None:
    key = tuple(key)
    while key:
        if key in lines:
            return lines[key]
        key = key[:-1]
    return lines.get(())


def dotted(key: tuple) -> str:
    """A key path as written in messages: `studies[1].params.radii`."""
    out = ""
    for part in key:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _data_path(data: Any, loc: tuple) -> tuple:
    """Drop pydantic's union tags from an error location, keeping real keys and indices."""
    path: list[Any] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
        if in_dict or in_list:
            path.append(part)
            node = node[part]
        elif isinstance(node, dict) and not isinstance(part, int) and not _is_union_tag(part, node):
            path.append(part)  # a missing or unknown key: keep it, it names the problem
            node = None
    return tuple(path)


def _is_union_tag(part: Any, node: dict) -> bool:
    """Whether a location part is a discriminated-union tag (``kind``/``source`` value)."""
    return part in (node.get("kind"), node.get("source")) or (
        isinstance(part, str) and ("[" in part or part.startswith("function-"))
    )


def _describe(err: dict) -> str:
    kind, msg = err["type"], err["msg"]
    given = err.get("input")
    if kind == "missing":
        return "required key is missing"
    if kind == "extra_forbidden":
        return "unknown key (check its spelling and where it is indented)"
    if kind == "union_tag_invalid":
        return f"{msg}"
    shown = repr(given) if not isinstance(given, dict | list) else type(given).__name__
    return f"{msg}; got {shown}"


def _spec_error(path: Path, lines: dict, data: Any, e: ValidationError) -> SpecError:
    errs = e.errors()
    first = errs[0]
    key = _data_path(data, tuple(first["loc"]))
    if first["type"] == "union_tag_invalid":  # point at the `kind:`/`source:` line itself
        key += (str(first.get("ctx", {}).get("discriminator", "")).strip("'\""),)
    more = ""
    if len(errs) > 1:
        more = f" (and {len(errs) - 1} more problem{'s' if len(errs) > 2 else ''})"
    return SpecError(path, _nearest_line(lines, key), dotted(key) or None, _describe(first) + more)


def _check_references(loaded: LoadedStudy) -> None:
    """Names used in entries exist; kinds exist; params and sweeps validate against the kind."""
    from runner.kinds import KIND_MODULES, get_kind

    study, path = loaded.study, loaded.path

    def fail(key: tuple, message: str) -> SpecError:
        return SpecError(path, loaded.line_of(*key), dotted(key), message)

    for name, model in study.models.items():
        if model.train is not None:
            for field_name in ("dataset", "val"):
                ref = getattr(model.train, field_name)
                if ref is not None and ref not in study.datasets:
                    raise fail(("models", name, "train", field_name),
                               f"unknown dataset {ref!r}; known: {_known(study.datasets)}")
    for i, entry in enumerate(study.studies):
        at = ("studies", i)
        if entry.kind not in KIND_MODULES or entry.kind == "train":
            choices = ", ".join(k for k in KIND_MODULES if k != "train")
            raise fail(at + ("kind",), f"unknown study kind {entry.kind!r}; known: {choices}")
        try:
            kind = get_kind(entry.kind)
        except KeyError:
            raise fail(at + ("kind",), f"study kind {entry.kind!r} is not installed") from None
        if kind.needs_model and not entry.models:
            raise fail(at + ("models",), f"kind {entry.kind!r} needs at least one model")
        for j, ref in enumerate(entry.models):
            if ref not in study.models:
                raise fail(at + ("models", j), f"unknown model {ref!r}; known: "
                           f"{_known(study.models)}")
        if entry.dataset is not None and entry.dataset not in study.datasets:
            raise fail(at + ("dataset",), f"unknown dataset {entry.dataset!r}; known: "
                       f"{_known(study.datasets)}")
        fields = kind.Params.model_fields
        for param, values in entry.sweep.items():
            if param not in fields:
                raise fail(at + ("sweep", param), f"kind {entry.kind!r} has no param {param!r}; "
                           f"its params: {', '.join(fields)}")
            if not values:
                raise fail(at + ("sweep", param), "a sweep needs at least one value")
        for combo, where in expand_sweep(entry):
            try:
                params = kind.Params.model_validate(combo)
            except ValidationError as e:
                err = e.errors()[0]
                loc = tuple(err["loc"])
                top = loc[0] if loc else None
                key = at + (("sweep", top) if top in where else ("params",) + loc)
                raise fail(key, _describe(err)) from None
            if entry.dataset is None and kind.requires_dataset(params):
                raise fail(at, f"kind {entry.kind!r} with these params needs a `dataset:`")
            for param in getattr(kind, "dataset_params", ()):
                ref = getattr(params, param)
                if ref is not None and ref not in study.datasets:
                    raise fail(at + ("params", param), f"unknown dataset {ref!r}; known: "
                               f"{_known(study.datasets)}")


def entry_task_count(entry: StudyEntry) -> int:
    """How many tasks an entry makes (before identical ones merge): sweep combinations times
    models. Computed from the list lengths, without expanding anything."""
    import math

    return math.prod(len(values) for values in entry.sweep.values()) * max(1, len(entry.models))


def _check_task_count(loaded: LoadedStudy, max_tasks: int) -> None:
    """Refuse a study whose entries make more than ``max_tasks`` tasks, before expanding any."""
    counts = [entry_task_count(e) for e in loaded.study.studies]
    total = sum(counts) + sum(m.train is not None for m in loaded.study.models.values())
    if total <= max_tasks:
        return
    biggest = max(range(len(counts)), key=counts.__getitem__)
    key = ("studies", biggest, "sweep") if loaded.study.studies[biggest].sweep else (
        "studies", biggest)
    raise SpecError(loaded.path, loaded.line_of(*key), dotted(key),
                    f"the study expands to {total:,} tasks ({counts[biggest]:,} from this "
                    f"entry), more than the limit of {max_tasks:,}. Check the sweep; to plan "
                    f"and run it anyway, give `--max-tasks {total}` to validate, plan and run "
                    "(or set VITSTUDY_MAX_TASKS)")


def expand_sweep(entry: StudyEntry) -> list[tuple[dict[str, Any], set[str]]]:
    """The params of each task of an entry: ``params`` overridden by each sweep combination."""
    import itertools

    keys = list(entry.sweep)
    combos = itertools.product(*(entry.sweep[k] for k in keys)) if keys else [()]
    return [(dict(entry.params, **dict(zip(keys, values, strict=True))), set(keys))
            for values in combos]


def _known(names: dict) -> str:
    return ", ".join(sorted(names)) or "(none declared)"


def json_schema() -> dict[str, Any]:
    """The study file's JSON Schema, for editors."""
    return Study.model_json_schema()
