"""Adversarial study files: every mistake a user can make in a study file (or on the command
line of validate / plan / run) is refused before anything runs, in one paragraph naming
file:line:key, with exit status 2 and nothing written.

Studies are tiny (a 2-block ViT built on the meta device, a 4-class synthetic world that is never
generated, a few 8-pixel PNGs), so the whole table runs in seconds after torch's import.
"""

from __future__ import annotations

import io
import re
import textwrap
from pathlib import Path

import pytest

from tests.adversarial.harness import Case, check_case
from tests.helpers import TINY_VIT

BASE = """\
name: adv
datasets:
  val:
    kind: synthetic
    split: val
    classes: 4
    val_per_class: 2
    size: 32
""" + TINY_VIT + """\
studies:
  - kind: topk
    models: [vit]
    dataset: val
    params: {layers: [0], features: [0]}
"""


def variant(*edits: tuple[str, str], base: str = BASE) -> str:
    """``base`` with each (old, new) replacement made once; fails if ``old`` is absent."""
    text = base
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new, 1)
    return text


def line(text: str, needle: str) -> int:
    """The 1-based line of ``text`` where ``needle`` first appears."""
    for number, content in enumerate(textwrap.dedent(text).splitlines(), start=1):
        if needle in content:
            return number
    raise AssertionError(needle)


def at(text: str, needle: str, key: str) -> str:
    """The pattern of a message at ``needle``'s line and ``key``: ``study.yaml:12: models.x``."""
    return rf"error: .*study\.yaml:{line(text, needle)}: {re.escape(key)}:"


def _png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 40, 40)).save(buf, format="PNG")
    return buf.getvalue()


PNG = _png()

#: An ImageNet-layout dataset in the case folder: two classes of two images.
FOLDER_DATASET = """\
name: adv
datasets:
  val:
    kind: imagenet
    root: data
models:
  vit:
    source: timm
    name: vit_tiny_patch16_224
    pretrained: false
    kwargs: {img_size: 32, patch_size: 8, depth: 2, embed_dim: 32, num_heads: 2, num_classes: 2}
studies:
  - kind: lowpass
    models: [vit]
    dataset: val
    params: {radii: [4]}
"""
IMAGES = {f"data/{c}/{i}.png": PNG for c in ("cat", "dog") for i in range(2)}

BAD_NAME = variant(("vit_tiny_patch16_224", "vit_tiny_patch16_2244"))
BAD_TAG = variant(("pretrained: false", "pretrained: augreg_in21k_ft_in1kk"))
PRETRAINED = variant(("pretrained: false", "pretrained: true"))
HEADS = variant(("num_heads: 2", "num_heads: 3"))
BAD_KWARG = variant(("num_classes: 4}", "num_classes: 4, wings: 2}"))
LAYER_99 = variant(("layers: [0]", "layers: [99]"))
FEATURE_999 = variant(("features: [0]", "features: [999]"))
SITE = variant(("features: [0]}", "features: [0], site: attn_weights}"))
BETAS = variant(("kind: topk", "kind: visualize"),
                ("features: [0]}", "features: [0], betas: [5, -1]}"))
SEED_HUGE = variant(("    dataset: val\n", "    dataset: val\n    seed: 1180591620717411303424\n"))
SEED_NEG = variant(("    dataset: val\n", "    dataset: val\n    seed: -1\n"))
SUBSET_SEED = variant(("    size: 32\n",
                       "    size: 32\n    subset: {limit: 4, seed: 9223372036854775808}\n"))
TRAIN_SEED = variant(("num_classes: 4}\n", "num_classes: 4}\n"
                      "    train: {dataset: val, epochs: 1, seed: 9223372036854775808}\n"))
TRAIN_LR_INF = variant(("num_classes: 4}\n", "num_classes: 4}\n"
                        "    train: {dataset: val, epochs: 1, lr: .inf}\n"))
LOWPASS = variant(("kind: topk", "kind: lowpass"), ("{layers: [0], features: [0]}", "{radii: [4]}"))
RADIUS_NAN = variant(("radii: [4]", "radii: [2, .nan]"), base=LOWPASS)
RADIUS_INF = variant(("radii: [4]", "radii: [.inf]"), base=LOWPASS)
PERCENT_NAN = variant(("kind: topk", "kind: spatial_drop"),
                      ("features: [0]}", "features: [0], percents: [0, .nan]}"))
STD_ZERO = variant(("num_classes: 4}\n", "num_classes: 4}\n    preprocess: {std: [0.5, 0, 0.5]}\n"))
MEAN_NAN = variant(("num_classes: 4}\n", "num_classes: 4}\n"
                    "    preprocess: {mean: [.nan, 0.5, 0.5]}\n"))
DUPLICATE_MODEL = variant(("studies:\n", """\
  vit_again:
    source: timm
    name: vit_tiny_patch16_224
    pretrained: false
    kwargs: {img_size: 32, patch_size: 8, depth: 2, embed_dim: 32, num_heads: 2, num_classes: 4}
studies:
"""), ("models: [vit]", "models: [vit, vit_again]"))
FGBG_NO_BOXES = variant(("kind: lowpass", "kind: fgbg"), ("params: {radii: [4]}\n", ""),
                        base=FOLDER_DATASET)
ENV_ROOT = variant(("root: data", "root: ${VITSTUDY_ADV_UNSET}"), base=FOLDER_DATASET)
ENV_ROOT_DEFAULT_EMPTY = variant(("root: data", "root: ${VITSTUDY_ADV_UNSET:-}"),
                                 base=FOLDER_DATASET)
ENV_EMPTY = variant(("root: data", "root: ${VITSTUDY_ADV_EMPTY}"), base=FOLDER_DATASET)
BOXES_ENV_EMPTY = variant(("root: data", "root: data\n    boxes: ${VITSTUDY_ADV_EMPTY}"),
                          base=FOLDER_DATASET)
LITERAL_EMPTY_ROOT = variant(("root: data", 'root: ""'), base=FOLDER_DATASET)
FLAT_LABELS = variant(("root: data", "root: data\n    labels: labels.txt"), base=FOLDER_DATASET)
SWEEP = variant(("params: {layers: [0], features: [0]}",
                 "params: {layers: [0]}\n    sweep: {features: [[0], [1]], k: [1, 2]}"))
BIG_SWEEP = variant(("params: {layers: [0], features: [0]}",
                     "params: {layers: [0]}\n    sweep: {k: [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],"
                     " features: &f [[0], [1], [2], [3], [4], [5], [6], [7], [8], [9]],"
                     " score: [mean, max], maps: [true, false],"
                     " render: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18,"
                     " 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37,"
                     " 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49]}"))


def alias_bomb(levels: int) -> str:
    """A 'billion laughs' study: ``levels`` nested lists of ten aliases (10**levels leaves)."""
    rows = ["name: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    rows += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    return "\n".join(rows) + "\n"


def _empty_root(folder: Path) -> None:
    (folder / "data").mkdir()


def _imageless_root(folder: Path) -> None:
    for c in ("cat", "dog"):
        (folder / "data" / c).mkdir(parents=True)
        (folder / "data" / c / "notes.txt").write_text("no images here")


def _flat_images(folder: Path) -> None:
    (folder / "data").mkdir()
    for i in range(3):
        (folder / "data" / f"{i}.png").write_bytes(PNG)


def _folder_as_study(folder: Path) -> None:
    (folder / "adir.yaml").mkdir()


NO_CUDA = "cuda:99"  # no machine has 100 GPUs: refused everywhere, GPU or not

CASES = [
    # ---------------------------------------------------------------- models: names, tags
    Case("timm-misspelled-name", ["validate", "{study}"], study=BAD_NAME,
         message=[at(BAD_NAME, "name: vit_tiny", "models.vit.name"),
                  r"did you mean: vit_tiny_patch16_224"]),
    Case("timm-unknown-pretrained-tag", ["validate", "{study}"], study=BAD_TAG,
         message=[at(BAD_TAG, "pretrained:", "models.vit.pretrained"),
                  r"no pretrained tag 'augreg_in21k_ft_in1kk'.*"
                  r"did you mean: augreg_in21k_ft_in1k"]),
    Case("timm-weights-not-offline", ["validate", "{study}"], study=PRETRAINED,
         env={"HF_HUB_OFFLINE": "1"},
         message=[at(PRETRAINED, "pretrained:", "models.vit.pretrained"),
                  r"not available.*HF_HUB_OFFLINE"]),
    Case("timm-heads-do-not-divide-embed-dim", ["validate", "{study}"], study=HEADS,
         message=[at(HEADS, "kwargs:", "models.vit.kwargs"), r"divisible by num_heads"]),
    Case("timm-unknown-constructor-kwarg", ["validate", "{study}"], study=BAD_KWARG,
         message=[at(BAD_KWARG, "kwargs:", "models.vit.kwargs"), r"wings"]),
    Case("open-clip-unknown-model", ["validate", "{study}"],
         study=variant(("source: timm\n    name: vit_tiny_patch16_224",
                        "source: open_clip\n    name: ViT-B-322"),
                       ("    kwargs: {img_size: 32, patch_size: 8, depth: 2, embed_dim: 32, "
                        "num_heads: 2, num_classes: 4}\n", "")),
         message=[r"study\.yaml:12: models\.vit\.name: open_clip has no model named 'ViT-B-322'",
                  r"did you mean: ViT-B-32"]),
    Case("torchvision-unknown-model", ["validate", "{study}"],
         study=variant(("source: timm\n    name: vit_tiny_patch16_224",
                        "source: torchvision\n    name: resnet5"),
                       ("    kwargs: {img_size: 32, patch_size: 8, depth: 2, embed_dim: 32, "
                        "num_heads: 2, num_classes: 4}\n", "")),
         message=[r"study\.yaml:12: models\.vit\.name: torchvision has no model named 'resnet5'",
                  r"did you mean: .*resnet50"]),
    Case("weights-file-missing", ["validate", "{study}"],
         study=variant(("pretrained: false", "weights: nowhere.safetensors")),
         message=[r"study\.yaml:\d+: .*weights file .*nowhere\.safetensors does not exist"]),
    # ----------------------------------------------------------- sites, layers, features
    Case("layer-out-of-range", ["validate", "{study}"], study=LAYER_99,
         message=[at(LAYER_99, "- kind: topk", "studies[0]"),
                  r"layer 99 is out of range.*2 blocks"]),
    Case("feature-out-of-range", ["validate", "{study}"], study=FEATURE_999,
         message=[at(FEATURE_999, "- kind: topk", "studies[0]"),
                  r"feature 999 is out of range.*128 features"]),
    Case("layer-out-of-range-on-plan", ["plan", "{study}"], study=LAYER_99,
         message=[at(LAYER_99, "- kind: topk", "studies[0]"), r"layer 99"]),
    Case("layer-out-of-range-on-run", ["run", "{study}"], study=LAYER_99,
         message=[at(LAYER_99, "- kind: topk", "studies[0]"), r"layer 99"]),
    Case("unknown-site", ["validate", "{study}"], study=SITE,
         message=[at(SITE, "params:", "studies[0].params.site"), r"attn_weights"]),
    # ------------------------------------------------------------------ param ranges
    Case("betas-out-of-range", ["validate", "{study}"], study=BETAS,
         message=[at(BETAS, "params:", "studies[0].params.betas[0]"), r"less than 1"]),
    Case("seed-past-2-63", ["validate", "{study}"], study=SEED_HUGE,
         message=[at(SEED_HUGE, "seed:", "studies[0].seed"),
                  r"less than or equal to 9223372036854775807"]),
    Case("seed-past-2-63-on-run", ["run", "{study}"], study=SEED_HUGE,
         message=[at(SEED_HUGE, "seed:", "studies[0].seed")]),
    Case("seed-negative", ["validate", "{study}"], study=SEED_NEG,
         message=[at(SEED_NEG, "seed:", "studies[0].seed"), r"greater than or equal to 0"]),
    Case("subset-seed-past-2-63", ["validate", "{study}"], study=SUBSET_SEED,
         message=[at(SUBSET_SEED, "subset:", "datasets.val.subset.seed")]),
    Case("train-seed-past-2-63", ["validate", "{study}"], study=TRAIN_SEED,
         message=[at(TRAIN_SEED, "train:", "models.vit.train.seed")]),
    Case("train-lr-infinite", ["validate", "{study}"], study=TRAIN_LR_INF,
         message=[at(TRAIN_LR_INF, "train:", "models.vit.train.lr"), r"finite"]),
    Case("radius-nan", ["validate", "{study}"], study=RADIUS_NAN,
         message=[at(RADIUS_NAN, "params:", "studies[0].params.radii[1]"), r"finite"]),
    Case("radius-inf", ["plan", "{study}"], study=RADIUS_INF,
         message=[at(RADIUS_INF, "params:", "studies[0].params.radii[0]"), r"finite"]),
    Case("percent-nan", ["validate", "{study}"], study=PERCENT_NAN,
         message=[at(PERCENT_NAN, "params:", "studies[0].params.percents[1]"), r"finite"]),
    Case("preprocess-std-zero", ["validate", "{study}"], study=STD_ZERO,
         message=[at(STD_ZERO, "preprocess:", "models.vit.preprocess.std[1]"), r"greater than 0"]),
    Case("preprocess-mean-nan", ["validate", "{study}"], study=MEAN_NAN,
         message=[at(MEAN_NAN, "preprocess:", "models.vit.preprocess.mean[0]"), r"finite"]),
    Case("lowpass-radii-negative", ["validate", "{study}"],
         study=variant(("radii: [4]", "radii: [-4]"), base=LOWPASS),
         message=[r"study\.yaml:19: studies\[0\]\.params\.radii: .*>= 0"]),
    Case("train-epochs-wrong-type", ["validate", "{study}"],
         study=variant(("num_classes: 4}\n", "num_classes: 4}\n"
                        "    train: {dataset: val, epochs: ten}\n")),
         message=[r"study\.yaml:15: models\.vit\.train\.epochs: .*integer.*'ten'"]),
    Case("synthetic-size-negative", ["validate", "{study}"],
         study=variant(("size: 32", "size: -5")),
         message=[r"study\.yaml:8: datasets\.val\.size: .*greater than or equal to 16"]),
    Case("synthetic-size-huge", ["validate", "{study}"],
         study=variant(("size: 32", "size: 1000000")),
         message=[r"study\.yaml:8: datasets\.val\.size: .*less than or equal to 2048"]),
    Case("synthetic-zero-images", ["validate", "{study}"],
         study=variant(("val_per_class: 2", "val_per_class: 0")),
         message=[r"study\.yaml:7: datasets\.val\.val_per_class: .*greater than or equal to 1"]),
    Case("huge-int-classes", ["validate", "{study}"],
         study=variant(("classes: 4", "classes: 1000000000000000000000000000000")),
         message=[r"study\.yaml:6: datasets\.val\.classes: .*less than or equal to 10"]),
    # ------------------------------------------------------- models: identity, references
    Case("two-models-one-identity", ["validate", "{study}"], study=DUPLICATE_MODEL,
         message=[at(DUPLICATE_MODEL, "vit_again:", "models.vit_again"),
                  r"same model as `models\.vit` \(line 10\)"]),
    Case("model-referenced-undefined", ["validate", "{study}"],
         study=variant(("models: [vit]", "models: [vitt]")),
         message=[r"study\.yaml:17: studies\[0\]\.models\[0\]: unknown model 'vitt'; known: vit"]),
    Case("dataset-referenced-undefined", ["validate", "{study}"],
         study=variant(("dataset: val", "dataset: vall")),
         message=[r"study\.yaml:18: studies\[0\]\.dataset: unknown dataset 'vall'; known: val"]),
    Case("unknown-kind", ["validate", "{study}"], study=variant(("kind: topk", "kind: topkk")),
         message=[r"study\.yaml:16: studies\[0\]\.kind: unknown study kind 'topkk'"]),
    Case("unknown-param", ["validate", "{study}"],
         study=variant(("features: [0]}", "features: [0], layer: 1}")),
         message=[r"study\.yaml:19: studies\[0\]\.params\.layer: unknown key"]),
    Case("unknown-top-level-key", ["validate", "{study}"], study=BASE + "extra: 1\n",
         message=[r"study\.yaml:20: extra: unknown key"]),
    Case("checkpoint-without-path", ["validate", "{study}"],
         study=variant(("source: timm\n    name: vit_tiny_patch16_224",
                        "source: checkpoint\n    arch: vit_tiny_patch16_224")),
         message=[r"study\.yaml:10: models\.vit: .*needs `arch` and `path`"]),
    # ------------------------------------------------------------------------- datasets
    Case("fgbg-without-boxes", ["validate", "{study}"], study=FGBG_NO_BOXES, files=IMAGES,
         message=[at(FGBG_NO_BOXES, "dataset: val", "studies[0].dataset"),
                  r"reads object boxes.*`boxes:`"]),
    Case("dataset-root-empty-folder", ["validate", "{study}"], study=FOLDER_DATASET,
         setup=_empty_root,
         message=[at(FOLDER_DATASET, "  val:", "datasets.val"), r"holds no images"]),
    Case("dataset-root-without-images", ["plan", "{study}"], study=FOLDER_DATASET,
         setup=_imageless_root,
         message=[at(FOLDER_DATASET, "  val:", "datasets.val"), r"holds no images"]),
    Case("dataset-flat-without-labels", ["validate", "{study}"], study=FOLDER_DATASET,
         setup=_flat_images,
         message=[at(FOLDER_DATASET, "  val:", "datasets.val"),
                  r"holds 3 images directly but no class folders, and no `labels` file"]),
    Case("dataset-flat-labels-file-missing", ["validate", "{study}"], study=FLAT_LABELS,
         setup=_flat_images,
         message=[at(FLAT_LABELS, "  val:", "datasets.val"), r"labels file .* does not exist"]),
    Case("dataset-root-missing", ["run", "{study}"], study=FOLDER_DATASET,
         message=[at(FOLDER_DATASET, "  val:", "datasets.val"), r"root folder .* does not exist"]),
    Case("dataset-boxes-folder-missing", ["validate", "{study}"], files=IMAGES,
         study=variant(("root: data", "root: data\n    boxes: nowhere"), base=FOLDER_DATASET),
         message=[r"study\.yaml:3: datasets\.val: .*boxes folder .*nowhere does not exist"]),
    # --------------------------------------------------------------- variables in paths
    Case("env-variable-unset", ["validate", "{study}"], study=ENV_ROOT, files=IMAGES,
         message=[at(ENV_ROOT, "root:", "datasets.val.root"), r"VITSTUDY_ADV_UNSET is not set"]),
    Case("env-variable-default-empty", ["validate", "{study}"], study=ENV_ROOT_DEFAULT_EMPTY,
         files=IMAGES,
         message=[at(ENV_ROOT_DEFAULT_EMPTY, "root:", "datasets.val.root"),
                  r"empty.*VITSTUDY_ADV_UNSET is unset or empty"]),
    Case("env-variable-set-empty", ["plan", "{study}"], study=ENV_EMPTY, files=IMAGES,
         env={"VITSTUDY_ADV_EMPTY": ""},
         message=[at(ENV_EMPTY, "root:", "datasets.val.root"), r"VITSTUDY_ADV_EMPTY"]),
    Case("env-variable-empty-boxes", ["validate", "{study}"], study=BOXES_ENV_EMPTY,
         files=IMAGES, env={"VITSTUDY_ADV_EMPTY": ""},
         message=[at(BOXES_ENV_EMPTY, "boxes:", "datasets.val.boxes"), r"VITSTUDY_ADV_EMPTY"]),
    Case("root-literally-empty", ["validate", "{study}"], study=LITERAL_EMPTY_ROOT, files=IMAGES,
         message=[at(LITERAL_EMPTY_ROOT, "root:", "datasets.val.root"), r"at least 1 character"]),
    # ----------------------------------------------------------------------- study names
    Case("name-300-characters", ["validate", "{study}"],
         study=variant(("name: adv", "name: " + "a" * 300)),
         message=[r"study\.yaml:1: name: .*at most 100 characters"]),
    Case("name-with-slash", ["validate", "{study}"],
         study=variant(("name: adv", "name: ../../etc/adv")),
         message=[r"study\.yaml:1: name: .*pattern"]),
    Case("name-dot-dot", ["validate", "{study}"], study=variant(("name: adv", "name: '..'")),
         message=[r"study\.yaml:1: name: .*pattern"]),
    Case("name-with-nul", ["validate", "{study}"], study=variant(("name: adv", 'name: "a\\0b"')),
         message=[r"study\.yaml:1: name: .*pattern"]),
    Case("name-with-control-character", ["validate", "{study}"],
         study=variant(("name: adv", 'name: "adv\\x1b[2J"')),
         message=[r"study\.yaml:1: name: .*pattern"]),
    Case("name-with-trailing-newline", ["validate", "{study}"],
         study=variant(("name: adv", 'name: "adv\\n"')),
         message=[r"study\.yaml:1: name: .*pattern"]),
    # ----------------------------------------------------------------- the file itself
    Case("not-utf8", ["validate", "study.yaml"],
         files={"study.yaml": BASE.replace("adv", "caf\xe9").encode("latin-1")},
         message=[r"study\.yaml:1: .*not UTF-8"]),
    Case("binary-file", ["validate", "study.yaml"],
         files={"study.yaml": bytes(range(256)) * 4},
         message=[r"study\.yaml:\d+: .*(not UTF-8|malformed YAML)"]),
    Case("empty-file", ["validate", "study.yaml"], files={"study.yaml": ""},
         message=[r"study\.yaml:1: expected a mapping"]),
    Case("top-level-list", ["validate", "study.yaml"], files={"study.yaml": "- name: adv\n"},
         message=[r"study\.yaml:1: expected a mapping"]),
    Case("directory-as-study-file", ["validate", "adir.yaml"], setup=_folder_as_study,
         message=[r"adir\.yaml: cannot read the study file \(Is a directory\)"]),
    Case("duplicate-key", ["validate", "{study}"],
         study=variant(("    size: 32\n", "    size: 32\n    size: 64\n")),
         message=[r"study\.yaml:9: datasets\.val\.size: duplicate key"]),
    Case("tab-indentation", ["validate", "{study}"],
         study=variant(("    split: val", "\tsplit: val")),
         message=[r"study\.yaml:5: malformed YAML"]),
    Case("deep-nesting", ["validate", "study.yaml"],
         files={"study.yaml": "name: " + "[" * 100_000 + "]" * 100_000 + "\n"},
         message=[r"study\.yaml"]),
    # ------------------------------------------------------------ bounded work from input
    Case("alias-bomb-10-to-the-7", ["validate", "study.yaml"],
         files={"study.yaml": alias_bomb(7)},
         message=[r"study\.yaml:7: YAML aliases .* past 1,000,000 values"]),
    Case("alias-bomb-10-to-the-9-on-run", ["run", "study.yaml"],
         files={"study.yaml": alias_bomb(9)},
         message=[r"study\.yaml:7: YAML aliases .* past 1,000,000 values"]),
    Case("alias-recursive", ["validate", "study.yaml"],
         files={"study.yaml": "name: adv\nx: &a [1, *a]\n"},
         message=[r"study\.yaml:2: YAML aliases .* contains them"]),
    Case("sweep-past-max-tasks", ["validate", "{study}"], study=BIG_SWEEP,
         message=[at(BIG_SWEEP, "sweep:", "studies[0].sweep"),
                  r"expands to 20,000 tasks.*limit of 10,000.*--max-tasks 20000"]),
    Case("sweep-past-max-tasks-on-run", ["run", "{study}"], study=BIG_SWEEP,
         message=[r"20,000 tasks"]),
    Case("sweep-past-lowered-max-tasks", ["plan", "{study}", "--max-tasks", "3"], study=SWEEP,
         message=[at(SWEEP, "sweep:", "studies[0].sweep"), r"4 tasks.*limit of 3"]),
    Case("sweep-within-raised-max-tasks", ["validate", "{study}", "--max-tasks", "4"], exit=0,
         study=SWEEP, message=[r"ok: study 'adv', 1 entry, 4 tasks"]),
    Case("sweep-unknown-param", ["validate", "{study}"],
         study=variant(("params: {layers: [0], features: [0]}",
                        "params: {layers: [0], features: [0]}\n    sweep: {steps: [1, 2]}")),
         message=[r"study\.yaml:20: studies\[0\]\.sweep\.steps: kind 'topk' has no param"]),
    # ------------------------------------------------------------------------- devices
    Case("device-gpu-on-validate", ["validate", "{study}", "--device", "gpu"], study=BASE,
         message=[r"--device: unknown device 'gpu'"]),
    Case("device-missing-cuda-on-plan", ["plan", "{study}", "--device", NO_CUDA], study=BASE,
         message=[r"--device: device 'cuda:99' is not available"]),
    Case("device-gpu-on-run", ["run", "{study}", "--device", "gpu"], study=BASE,
         message=[r"unknown device 'gpu'"]),
    Case("device-missing-cuda-on-run", ["run", "{study}", "--device", NO_CUDA], study=BASE,
         message=[r"device 'cuda:99' is not available"]),
    Case("device-cpu-validates", ["validate", "{study}", "--device", "cpu"], study=BASE, exit=0,
         message=[r"ok: study 'adv', 1 entry, 1 tasks"]),
]


@pytest.mark.parametrize("case", CASES, ids=str)
def test_case(case: Case, tmp_path: Path) -> None:
    check_case(case, tmp_path)


def test_cases_have_unique_ids() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 45
