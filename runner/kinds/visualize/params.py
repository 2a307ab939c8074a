"""Params of ``visualize``: light (pydantic only), read when a study is planned."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from runner.kinds.sites import FeatureSelection, SiteParams, chunk_field

#: An Adam beta: a decay rate, in [0, 1) (torch refuses anything else when the task starts).
Beta = Annotated[float, Field(ge=0.0, lt=1.0)]


class VisualizeParams(SiteParams):
    """Which features to visualize, the optimization recipe, and the panels."""

    features: FeatureSelection = Field(
        [0, 1, 2, 3], description="per layer: a list of indices, a range {start, stop, step}, "
        "`all`, or {top: N, by: topk-activation} (the N most active on the dataset)")
    #: 64 features a task: a few minutes of a GPU each at the paper's recipe, so a killed run
    #: of a 3,072-feature layer loses at most one chunk
    chunk: int | None = chunk_field(64)
    steps: int = Field(400, ge=1, description="optimizer steps")
    lr: float = Field(0.1, gt=0, description="Adam learning rate at the start")
    betas: tuple[Beta, Beta] = Field((0.5, 0.99), description="Adam betas, each in [0, 1)")
    lr_schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="cosine annealing to 0 over the run, or constant")
    copies: int = Field(8, ge=1, description="augmented copies of each image per step")
    jitter: int = Field(32, ge=0, description="circular shifts in [-jitter, jitter] pixels")
    jitter_per_copy: bool = Field(
        False, description="a shift per copy (default: one per step, shared, as the authors)")
    color_mean: float = Field(1.0, ge=0, description="colour shift: mu ~ U(-m, m)")
    color_std: float = Field(1.0, ge=0, description="colour shift: sigma = exp(U(-s, s))")
    noise: Literal["channel", "pixel", "none"] = Field(
        "channel", description="noise added per (image, channel) (authors' code) or per pixel "
        "(the paper's text)")
    noise_std: float = Field(0.5, ge=0, description="noise std at the first step, linear to 0")
    tv_weight: float = Field(4e-4, ge=0, description="weight of total variation in the loss")
    parameterization: Literal["pixel", "fft", "fft_decorrelated"] = Field(
        "pixel", description="raw pixels clamped to [0, 1] (paper), or Lucid's Fourier "
        "spectrum with a sigmoid, optionally in decorrelated colour")
    trace_every: int = Field(50, ge=1, description="record the objective every this many steps")
    top_images: int = Field(5, ge=1, description="images per panel (and k of `top` selection)")
    panels: bool = Field(True, description="with a dataset: write the Figure 2 panels")
    retries: int = Field(
        2, ge=0, le=8, description="extra attempts for a feature whose optimization failed: "
        "another seed, then an init from its best dataset image (without a dataset: the other "
        "parameterization), each batched")
    fail_floor: float = Field(
        0.0, description="an optimization failed when the final activation is not above this")
    fail_fraction: float = Field(
        0.25, ge=0.0, le=1.0, description="with a dataset, it also failed when the final "
        "activation is below this fraction of the feature's best dataset score (natural_max)")
    blur_sigma: float = Field(1.0, gt=0, description="kept_blur: Gaussian blur of this many "
                              "pixels (standard deviation)")
    shift: int = Field(8, ge=0, description="kept_shift: circular shift by this many pixels "
                       "down and right")
    jpeg_quality: int = Field(75, ge=1, le=100, description="kept_jpeg: JPEG at this quality")
