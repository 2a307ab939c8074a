"""The study file's schema: datasets, models and study entries as pydantic models.

Only the shape of the file lives here (layer 0: pydantic and the standard library). Reading
it (YAML, ``${VAR}``, lines for messages) and checking it against the installed kinds is
``runner.spec``.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PositiveFloat,
    SerializerFunctionWrapHandler,
    field_validator,
    model_serializer,
    model_validator,
)

#: Largest seed a study may give: seeds feed 64-bit generators (torch, numpy), and a larger one
#: would abort the run that reaches it.
SEED_MAX = 2**63 - 1

#: A seed field: an integer in 0..2^63-1, refused when the study file is loaded.
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]

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


class TrainSpec(SpecModel):
    """Train the model inside the study; its checkpoint feeds every task using the model."""

    # Its other keys are the train kind's params: this layer cannot see the kinds, so
    # ``runner.spec`` validates them against ``get_kind("train").Params`` on load and stores
    # the validated values (defaults included) back here.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False, frozen=True)

    dataset: str = Field(description="name of the training dataset in `datasets:`")

    @model_serializer(mode="wrap")
    def _dataset_last(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """Dump the params first and ``dataset`` last, the order task keys were made with."""
        data = handler(self)
        if "dataset" in data:
            data["dataset"] = data.pop("dataset")
        return data


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


def json_schema(train_params: type[BaseModel] | None = None) -> dict[str, Any]:
    """The study file's JSON Schema, for editors. ``train_params`` (the train kind's params
    model) describes the keys of a model's ``train:`` block besides ``dataset``."""
    schema = Study.model_json_schema()
    if train_params is not None:
        params = train_params.model_json_schema()
        train = schema["$defs"]["TrainSpec"]
        train["properties"] = {**params.get("properties", {}), **train["properties"]}
        train["required"] = [*params.get("required", []), *train.get("required", [])]
        train["additionalProperties"] = False
        schema["$defs"].update(params.get("$defs", {}))
    return schema
