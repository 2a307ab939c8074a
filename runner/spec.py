"""Loading a study file, with errors that name file, line, key; its schema is ``runner.schema``.

A study file declares datasets, models and study entries (a kind applied to some models on a
dataset, with params and an optional ``sweep:`` grid). ``${VAR}`` anywhere in a string is
replaced by the environment variable ``VAR`` (``${VAR:-default}`` gives a default).
"""

from __future__ import annotations

import gc
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from runner.errors import ExpansionError, KindError, SpecError
from runner.kinds import Kind, available_kinds, get_kind
from runner.schema import Study, StudyEntry, TrainSpec
from runner.schema import json_schema as _schema_json

__all__ = [
    "MAX_TASKS", "MAX_YAML_NODES", "LoadedStudy", "dotted", "entry_task_count", "expand_sweep",
    "expanded_size", "gc_paused", "json_schema", "load_study",
]


@contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector held while a study's thousands of lasting objects are built
    (nodes, params, tasks): each collection would walk them all again, to free nothing. Also
    a decorator; inside another pause (or with the collector off) it changes nothing."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class LoadedStudy:
    """A validated study with where it came from (relative paths resolve against its folder)."""

    def __init__(self, study: Study, path: Path, lines: dict[tuple, int],
                 max_tasks: int | None = None) -> None:
        self.study = study
        self.path = path
        self.base_dir = path.parent
        self.lines = lines
        #: the most tasks the study may plan (``load_study``'s ``max_tasks``); the planner
        #: checks it again once big feature selections are split into chunk tasks
        self.max_tasks = MAX_TASKS if max_tasks is None else max_tasks
        self._params: dict[int, list[Any]] = {}  # by entry: what _check_params validated

    @property
    def name(self) -> str:
        return self.study.name

    def line_of(self, *key: Any) -> int | None:
        return _nearest_line(self.lines, key)

    def entry_params(self, index: int) -> list[Any]:
        """The validated params of each task of ``studies[index]``, in sweep order: validated
        once, by ``load_study``, and shared with the planner."""
        if index not in self._params:
            entry = self.study.studies[index]
            params_cls = get_kind(entry.kind).Params
            self._params[index] = [params_cls.model_validate(c) for c, _ in expand_sweep(entry)]
        return self._params[index]


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


@gc_paused()
def load_study(path: str | Path, max_tasks: int = MAX_TASKS) -> LoadedStudy:
    """Read, interpolate and validate a study file; raise ``SpecError`` on any problem,
    including a study that expands to more than ``max_tasks`` tasks."""
    path = Path(path)
    lines, data, dollars = _parse_yaml(path, _read_text(path))
    if not isinstance(data, dict):
        raise SpecError(path, 1, None, "expected a mapping with `name`, `datasets`, `models` "
                        "and `studies` at the top of the file")
    if dollars:  # else no string has a `${` to replace
        data = _interpolate(path, data, lines, ())
    try:
        study = Study.model_validate(data)
    except ValidationError as e:
        raise _spec_error(path, lines, data, e) from None
    loaded = LoadedStudy(study, path.resolve(), lines, max_tasks)
    _check_train(loaded)
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


def _parse_yaml(path: Path, text: str) -> tuple[dict[tuple, int], Any, bool]:
    """Parse YAML; also map every key path to its line (1-based), refusing duplicate keys and
    documents that aliases expand past ``MAX_YAML_NODES`` (checked before anything expands).
    Last, whether any string may hold a ``$`` (``_interpolate`` changes nothing else)."""
    lines: dict[tuple, int] = {}
    try:
        node = yaml.compose(text, Loader=_Loader)
        if node is not None and "*" not in text:  # a tree: one walk, when it is plain
            try:
                return lines, *_read_tree(node, lines, MAX_YAML_NODES)
            except Exception:  # noqa: BLE001 - read again below, as it always was
                lines.clear()
        if node is not None:
            _check_expansion(path, node, MAX_YAML_NODES, aliases="*" in text)
            # lines before constructing: the loader merges `<<: *anchor` keys into the
            # mapping's node itself, and the keys a mapping overrides would look duplicated
            _walk_lines(path, node, (), lines)
        data = None if node is None else _construct(_Loader(""), node)
    except RecursionError:
        raise SpecError(path, None, None, "the YAML is nested too deeply to read") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(e, "problem", None) or str(e)
        raise SpecError(path, line, None, f"malformed YAML: {problem}") from None
    return lines, data, True


#: The tags of what study files hold: the constructors of these build what the loader would.
_PLAIN_SCALARS = frozenset(f"tag:yaml.org,2002:{t}" for t in ("null", "bool", "int", "float",
                                                               "str"))
_SEQ, _MAP = "tag:yaml.org,2002:seq", "tag:yaml.org,2002:map"
_STR, _INT = "tag:yaml.org,2002:str", "tag:yaml.org,2002:int"


class _NotPlain(Exception):
    """A node ``_plain`` leaves to the loader (a merge key, a set, a timestamp, a custom tag)."""


def _construct(loader: Any, node: yaml.Node) -> Any:
    """``loader.construct_document(node)``, in one direct walk where the document holds only
    plain mappings, sequences and scalars (the loader's per-node machinery is most of a big
    sweep's loading time). Anything else, or any error, and the loader builds it all itself,
    exactly as before, raising its own error."""
    try:
        return _plain(loader, node, {})
    except Exception:  # noqa: BLE001 - redone by the loader, which raises what it raises
        return loader.construct_document(node)


def _plain(loader: Any, node: yaml.Node, made: dict[int, Any]) -> Any:
    """The value of a plain node; ``made``: the collections built so far, by node (an alias
    gives the same object, as the loader's does)."""
    if isinstance(node, yaml.ScalarNode):
        return _plain_scalar(loader, node)
    if id(node) in made:
        return made[id(node)]
    if node.tag == _SEQ and isinstance(node, yaml.SequenceNode):
        items = made[id(node)] = []
        items.extend([_plain(loader, item, made) for item in node.value])
        return items
    if node.tag != _MAP or not isinstance(node, yaml.MappingNode):
        raise _NotPlain(node.tag)
    mapping = made[id(node)] = {}
    for key_node, value_node in node.value:
        if not isinstance(key_node, yaml.ScalarNode):  # unhashable, or rare: the loader's
            raise _NotPlain(key_node.tag)
        mapping[_plain(loader, key_node, made)] = _plain(loader, value_node, made)
    return mapping


def _plain_scalar(loader: Any, node: yaml.Node) -> Any:
    """The value of a plain scalar node; ``_NotPlain`` for a tag ``_plain`` leaves to the
    loader."""
    tag, text = node.tag, node.value
    if tag == _STR:
        return text
    if tag == _INT and text.isdigit() and (text[0] != "0" or text == "0"):
        return int(text)  # what the loader makes of plain decimal digits
    if tag not in _PLAIN_SCALARS:
        raise _NotPlain(tag)
    return loader.yaml_constructors[tag](loader, node)


def _read_tree(root: yaml.Node, lines: dict[tuple, int], limit: int) -> tuple[Any, bool]:
    """What ``_check_expansion``, ``_walk_lines`` and ``_construct`` do with a document
    without aliases (a tree), in one walk instead of three: count its nodes, map each key path
    to its line in ``lines``, and build its values as ``_plain`` does. Returns the values and
    whether any string holds a ``$``. Raises ``_NotPlain`` where the three would do anything
    else (a duplicate or unhashable key, a node ``_plain`` leaves to the loader, more than
    ``limit`` nodes), or an error one of them would raise: the caller then runs them."""
    loader = _Loader("")
    size, dollars = 1, False

    def scalar(node: yaml.Node) -> Any:
        nonlocal dollars
        value = _plain_scalar(loader, node)
        dollars = dollars or (type(value) is str and "$" in value)
        return value

    def collection(node: yaml.Node, at: tuple) -> Any:
        nonlocal size
        if node.tag == _SEQ and isinstance(node, yaml.SequenceNode):
            size += len(node.value)
            if size > limit:
                raise _NotPlain("too many nodes")
            items = []
            for i, item in enumerate(node.value):
                here = at + (i,)
                lines[here] = item.start_mark.line + 1
                items.append(scalar(item) if isinstance(item, yaml.ScalarNode)
                             else collection(item, here))
            return items
        if node.tag != _MAP or not isinstance(node, yaml.MappingNode):
            raise _NotPlain(node.tag)
        size += 2 * len(node.value)
        if size > limit:
            raise _NotPlain("too many nodes")
        mapping, seen = {}, set()
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value in seen:
                raise _NotPlain("duplicate or unhashable key")
            key = key_node.value  # lines and duplicates go by the key's text
            seen.add(key)
            here = at + (key,)
            lines[here] = key_node.start_mark.line + 1
            mapping[scalar(key_node)] = (scalar(value_node)
                                         if isinstance(value_node, yaml.ScalarNode)
                                         else collection(value_node, here))
        return mapping

    lines[()] = root.start_mark.line + 1
    data = scalar(root) if isinstance(root, yaml.ScalarNode) else collection(root, ())
    if size > limit:  # (a lone scalar)
        raise _NotPlain("too many nodes")
    return data, dollars


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
    skip = yaml.ScalarNode if limit >= 1 else ()  # a scalar counts 1 and holds nothing
    while stack:
        node, children_done = stack.pop()
        key = id(node)
        if children_done:
            on_path.discard(key)
            sizes[key] = 1 + sum(sizes.get(id(c), 1) for c in _node_children(node))
            if sizes[key] > limit:
                raise ExpansionError(f"expand the document past {limit:,} values (a study "
                                     "file may hold at most that many)", _line(node))
        elif key in on_path:
            raise ExpansionError("refer to a node that contains them (the document would "
                                 "never end)", _line(node))
        elif key not in sizes:
            on_path.add(key)
            stack.append((node, True))
            stack.extend((c, False) for c in _node_children(node) if not isinstance(c, skip))
    return sizes[id(root)]


def _line(node: yaml.Node) -> int:
    """The 1-based line a YAML node starts on."""
    return node.start_mark.line + 1


def _check_expansion(path: Path, node: yaml.Node, limit: int, aliases: bool = True) -> None:
    """``SpecError`` unless ``node`` expands to at most ``limit`` values. A document without
    aliases (no ``*`` in its text) is a tree: when its node count is within the limit, so is
    every part of it, and the thorough walk is spared."""
    if not aliases and _tree_size(node) <= limit:
        return
    try:
        expanded_size(node, limit)
    except ExpansionError as e:
        raise SpecError(path, e.line, None, f"YAML aliases (`*name`) here {e}") from None


def _tree_size(root: yaml.Node) -> int:
    """How many nodes a document without aliases holds (each is reached once)."""
    size, stack = 1, [root]
    while stack:
        children = _node_children(stack.pop())
        size += len(children)
        stack.extend(c for c in children if not isinstance(c, yaml.ScalarNode))
    return size


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
            if not isinstance(value_node, yaml.ScalarNode):  # nothing below a scalar
                _walk_lines(path, value_node, at + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            lines[at + (i,)] = item.start_mark.line + 1
            if not isinstance(item, yaml.ScalarNode):
                _walk_lines(path, item, at + (i,), lines)


def _interpolate(path: Path, value: Any, lines: dict[tuple, int], at: tuple) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string."""
    if isinstance(value, dict):
        return {k: _interpolate(path, v, lines, at + (k,)) if isinstance(v, _TEXTUAL) else v
                for k, v in value.items()}
    if isinstance(value, list):  # a sweep's thousands of numbers are passed by as they are
        return [_interpolate(path, v, lines, at + (i,)) if isinstance(v, _TEXTUAL) else v
                for i, v in enumerate(value)]
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


#: What ``_interpolate`` looks into: strings, and the containers that may hold them.
_TEXTUAL = (str, dict, list)


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


def _check_train(loaded: LoadedStudy) -> None:
    """Validate each model's ``train:`` block against the train kind's params, then store the
    validated values (defaults included) in the params' order, then ``dataset``: the block's
    part of the model's identity and of task keys."""
    params_model = None
    for name, model in loaded.study.models.items():
        if model.train is None:
            continue
        at = ("models", name, "train")
        params_model = params_model or _kind_at(loaded, "train", at).Params
        try:
            params = params_model.model_validate(model.train.model_extra or {})
        except ValidationError as e:
            err = e.errors()[0]
            raise _fail(loaded, at + tuple(err["loc"]), _describe(err)) from None
        model.train = TrainSpec(**params.model_dump(), dataset=model.train.dataset)


def _fail(loaded: LoadedStudy, key: tuple, message: str) -> SpecError:
    """A ``SpecError`` at ``key`` of the loaded study file."""
    return SpecError(loaded.path, loaded.line_of(*key), dotted(key), message)


def _kind_at(loaded: LoadedStudy, name: str, key: tuple) -> Kind:
    """The installed kind ``name``; a ``SpecError`` at ``key`` when it is not installed or its
    package is broken."""
    try:
        return get_kind(name)
    except KeyError:
        raise _fail(loaded, key, f"study kind {name!r} is not installed") from None
    except KindError as e:
        raise _fail(loaded, key, str(e)) from None


def _check_references(loaded: LoadedStudy) -> None:
    """Names used in entries exist; kinds exist; params and sweeps validate against the kind."""
    study = loaded.study
    for name, model in study.models.items():
        if model.train is not None:
            for field_name in ("dataset", "val"):
                ref = getattr(model.train, field_name, None)
                if ref is not None and ref not in study.datasets:
                    raise _fail(loaded, ("models", name, "train", field_name),
                                f"unknown dataset {ref!r}; known: {_known(study.datasets)}")
    known_kinds = [k for k in available_kinds() if k != "train"]
    for i, entry in enumerate(study.studies):
        at = ("studies", i)
        if entry.kind not in known_kinds:
            raise _fail(loaded, at + ("kind",), f"unknown study kind {entry.kind!r}; known: "
                        f"{', '.join(known_kinds)}")
        kind = _kind_at(loaded, entry.kind, at + ("kind",))
        if kind.needs_model and not entry.models:
            raise _fail(loaded, at + ("models",), f"kind {entry.kind!r} needs at least one model")
        for j, ref in enumerate(entry.models):
            if ref not in study.models:
                raise _fail(loaded, at + ("models", j), f"unknown model {ref!r}; known: "
                            f"{_known(study.models)}")
        if entry.dataset is not None and entry.dataset not in study.datasets:
            raise _fail(loaded, at + ("dataset",), f"unknown dataset {entry.dataset!r}; known: "
                        f"{_known(study.datasets)}")
        _check_params(loaded, at, entry, kind)


def _check_params(loaded: LoadedStudy, at: tuple, entry: StudyEntry, kind: Kind) -> None:
    """An entry's sweep names the kind's params, and every combination validates; datasets
    its params name exist. The validated params are kept for the planner (``entry_params``)."""
    datasets = loaded.study.datasets
    fields = kind.Params.model_fields
    for param, values in entry.sweep.items():
        if param not in fields:
            raise _fail(loaded, at + ("sweep", param), f"kind {entry.kind!r} has no param "
                        f"{param!r}; its params: {', '.join(fields)}")
        if not values:
            raise _fail(loaded, at + ("sweep", param), "a sweep needs at least one value")
    validated = []
    validate, dataset_params = kind.Params.model_validate, getattr(kind, "dataset_params", ())
    for combo, where in expand_sweep(entry):
        try:
            params = validate(combo)
        except ValidationError as e:
            err = e.errors()[0]
            loc = tuple(err["loc"])
            top = loc[0] if loc else None
            key = at + (("sweep", top) if top in where else ("params",) + loc)
            raise _fail(loaded, key, _describe(err)) from None
        if entry.dataset is None and kind.requires_dataset(params):
            raise _fail(loaded, at, f"kind {entry.kind!r} with these params needs a `dataset:`")
        for param in dataset_params:
            ref = getattr(params, param)
            if ref is not None and ref not in datasets:
                raise _fail(loaded, at + ("params", param), f"unknown dataset {ref!r}; known: "
                            f"{_known(datasets)}")
        validated.append(params)
    loaded._params[at[1]] = validated


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
    swept = set(keys)  # one set for all combinations: it is only read
    if len(keys) == 1:  # the usual sweep, of one param: the same dicts, made faster
        (key,) = keys
        return [({**entry.params, key: value}, swept) for value in entry.sweep[key]]
    combos = itertools.product(*(entry.sweep[k] for k in keys)) if keys else [()]
    return [({**entry.params, **dict(zip(keys, values, strict=True))}, swept)
            for values in combos]


def _known(names: dict) -> str:
    return ", ".join(sorted(names)) or "(none declared)"


def json_schema() -> dict[str, Any]:
    """The study file's JSON Schema, for editors: ``runner.schema``'s, with the train kind's
    params as the keys of a model's ``train:`` block."""
    return _schema_json(get_kind("train").Params)
