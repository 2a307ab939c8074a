"""The ``visualize`` run: features maximized in batches of jobs x augmented copies, with, when
a dataset is given, the ranking pass that picks ``top`` features and fills the panels."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import partial

import torch

from runner.kinds.base import Progress, TaskContext, precision_scope, truncated_forward_cost
from runner.kinds.ranking import Ranking, model_inputs, rank_dataset
from runner.kinds.sites import TopFeatures, explicit_features, resolve_sites
from runner.kinds.visualize.params import VisualizeParams
from runner.models.base import FeatureRead, LoadedModel, SiteInfo
from runner.ops.activation import patch_mean
from runner.ops.augment import AugmentSettings, augment, draw_augment, image_generator
from runner.ops.image_param import PixelImage, make_image_param
from runner.ops.perturb import circular_shift, gaussian_blur, jpeg
from runner.ops.regularizers import total_variation
from runner.render import feature_panel, to_pil


@dataclass(frozen=True)
class Recipe:
    """The optimization settings, as plain values (the bench and tests build these directly)."""

    steps: int = 400
    lr: float = 0.1
    betas: tuple[float, float] = (0.5, 0.99)
    cosine: bool = True
    tv_weight: float = 4e-4
    parameterization: str = "pixel"
    trace_every: int = 50
    augment: AugmentSettings | None = None  # None: the paper's ensemble

    @classmethod
    def from_params(cls, p: VisualizeParams) -> Recipe:
        return cls(
            steps=p.steps, lr=p.lr, betas=p.betas, cosine=p.lr_schedule == "cosine",
            tv_weight=p.tv_weight, parameterization=p.parameterization,
            trace_every=p.trace_every,
            augment=AugmentSettings(
                copies=p.copies, max_shift=p.jitter, shared_jitter=not p.jitter_per_copy,
                color_mean=p.color_mean, color_std=p.color_std, noise=p.noise,
                noise_start=p.noise_std,
            ),
        )


@dataclass(frozen=True)
class FeatureJob:
    """One feature to visualize."""

    site: SiteInfo
    feature: int


@dataclass
class Optimized:
    """A visualized feature: its image, the objective on it, and the objective during the run;
    ``attempts`` tried (1: the first succeeded) and whether the last one still ``failed``."""

    job: FeatureJob
    image: torch.Tensor  # (3, H, W) in [0, 1], CPU
    activation: float  # patch-token mean on the final image, no augmentation
    trace: list[tuple[int, float]] = field(default_factory=list)  # (step, augmented objective)
    attempts: int = 1
    failed: bool = False


@contextmanager
def frozen(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode and no weight gradients while optimizing inputs; flags restored after."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    model.eval()
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass(frozen=True)
class Segment:
    """Consecutive rows of a batch whose jobs share a site, with each row's feature."""

    site: SiteInfo
    rows: slice
    features: torch.Tensor  # (rows,) long


def segments(jobs: Sequence[FeatureJob], copies: int, device: str = "cpu") -> list[Segment]:
    """The batch (jobs x copies, copy-minor) cut into runs of jobs on the same site."""
    out, start = [], 0
    while start < len(jobs):
        end = start
        while end < len(jobs) and jobs[end].site == jobs[start].site:
            end += 1
        features = torch.tensor([j.feature for j in jobs[start:end]], device=device)
        out.append(Segment(jobs[start].site, slice(start * copies, end * copies),
                           features.repeat_interleave(copies)))
        start = end
    return out


def job_objectives(model: LoadedModel, x: torch.Tensor, parts: Sequence[Segment], *,
                   truncated: bool = True, precision: str = "fp32") -> torch.Tensor:
    """(rows,): each row's objective, its job's feature averaged over the patch tokens.
    ``truncated``: the forward stops at the deepest site and computes only the features read;
    otherwise it runs in full and reads the whole site, the authors' way. The forward runs at
    ``precision``; the objective is float32."""
    reads = [FeatureRead(p.site.name, p.rows, p.features) for p in parts]
    with precision_scope(x.device, precision):
        values = model.read_features(x, reads, truncated=truncated)
    return torch.cat([patch_mean(v.float(), p.site.prefix_tokens, p.site.tokens)
                      for v, p in zip(values, parts, strict=True)])


def optimize_features(model: LoadedModel, jobs: Sequence[FeatureJob], recipe: Recipe, *,
                      seed: int, device: str = "cpu", truncated: bool = True,
                      precision: str = "fp32", attempt: int = 1,
                      init: torch.Tensor | None = None,
                      on_step: Callable[[int], None] | None = None) -> list[Optimized]:
    """Maximize every job's feature in one batch (jobs x copies). Each image's randomness comes
    from its own generator (seed, layer, feature; plus ``attempt`` from the second on), so
    results do not depend on batching. ``init``: (jobs, 3, H, W) starting pixels in [0, 1]
    (a pixel parameterization, whatever the recipe's). ``truncated=False`` runs every forward
    in full (the authors' way, for comparison). The model forwards run at ``precision``; the
    image parameters stay float32."""
    settings = recipe.augment or AugmentSettings()
    copies, size = settings.copies, (model.preprocess.size, model.preprocess.size)
    salt = () if attempt == 1 else (attempt - 1,)
    gens = [image_generator(seed, j.site.layer, j.feature, *salt) for j in jobs]
    results = [Optimized(j, torch.empty(0), float("nan"), attempts=attempt) for j in jobs]
    augmented, plain = segments(jobs, copies, device), segments(jobs, 1, device)
    with frozen(model):
        param = (PixelImage(init.to(device)) if init is not None
                 else make_image_param(recipe.parameterization, gens, size, device))
        optimizer = torch.optim.Adam(param.params, lr=recipe.lr, betas=recipe.betas)
        schedule = (torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, recipe.steps, 0.0)
                    if recipe.cosine else None)
        for step in range(recipe.steps):
            draw = draw_augment(settings, gens, step, recipe.steps, size, device)
            batch = augment(param.image(), draw)
            objective = job_objectives(model, batch, augmented, truncated=truncated,
                                       precision=precision)
            objective = objective.view(len(jobs), copies).mean(1)
            tv = total_variation(batch).view(len(jobs), copies).mean(1)
            optimizer.zero_grad(set_to_none=True)
            (recipe.tv_weight * tv - objective).sum().backward()
            optimizer.step()
            if schedule is not None:
                schedule.step()
            param.project()
            if step % recipe.trace_every == 0 or step == recipe.steps - 1:
                for r, value in zip(results, objective.tolist(), strict=True):
                    r.trace.append((step, value))
            if on_step is not None:
                on_step(step)
        with torch.no_grad():
            images = param.image().detach()
            final = job_objectives(model, images, plain, truncated=truncated,
                                   precision=precision)
    for r, image, value in zip(results, images.cpu(), final.tolist(), strict=True):
        r.image, r.activation = image, value
    return results


def chunks(jobs: Sequence[FeatureJob], size: int) -> list[list[FeatureJob]]:
    """Jobs sorted by layer, then cut into groups of at most ``size``. A group's forward runs to
    its deepest layer, so a new group also starts where the layer changes once the current one
    is at least half full: shallow features do not pay for deep blocks just to fill a batch."""
    ordered = sorted(jobs, key=lambda j: (j.site.layer, j.site.name, j.feature))
    groups: list[list[FeatureJob]] = []
    for job in ordered:
        current = groups[-1] if groups else None
        if (current is None or len(current) >= size
                or (job.site != current[-1].site and 2 * len(current) >= size)):
            groups.append([job])
        else:
            current.append(job)
    return groups


def step_cost(group: Sequence[FeatureJob]) -> float:
    """Relative cost of one optimizer step of a group: its images times the depth its
    truncated forward reaches (deep layers cost more; the ETA weighs steps by this)."""
    return len(group) * truncated_forward_cost(max(j.site.layer for j in group))


@dataclass
class Optimizer:
    """How a task's features are optimized: model, recipe, seed, features per batch, device and
    precision; each call of ``run`` is a phase of the task's progress."""

    model: LoadedModel
    recipe: Recipe
    seed: int
    batch: int = 1  # features per batch (the batch is features x copies images)
    device: str = "cpu"
    precision: str = "fp32"
    progress: Progress | None = None

    def run(self, jobs: Sequence[FeatureJob], *, attempt: int = 1, recipe: Recipe | None = None,
            init: Mapping[FeatureJob, torch.Tensor] | None = None) -> list[Optimized]:
        """Optimize ``jobs`` group by group (``chunks``); ``init``: starting pixels by job."""
        recipe = recipe or self.recipe
        groups = chunks(jobs, self.batch)
        if self.progress is not None:
            self.progress.set_total(self.progress.done + len(groups) * recipe.steps,
                                    work=recipe.steps * sum(map(step_cost, groups)))
        out: list[Optimized] = []
        for group in groups:
            cost = step_cost(group)
            out += optimize_features(
                self.model, group, recipe, seed=self.seed, device=self.device,
                precision=self.precision, attempt=attempt,
                init=None if init is None else torch.stack([init[j] for j in group]),
                on_step=None if self.progress is None else (
                    lambda _, cost=cost: self.progress.advance(work=cost)))
        return out


@dataclass(frozen=True)
class Retry:
    """When an optimization has failed, and how many more attempts a failed feature gets."""

    retries: int = 2
    floor: float = 0.0  # failed: final activation not above this ...
    fraction: float = 0.25  # ... or below this fraction of natural_max (with a dataset)

    @classmethod
    def from_params(cls, p: VisualizeParams) -> Retry:
        return cls(retries=p.retries, floor=p.fail_floor, fraction=p.fail_fraction)

    def failed(self, activation: float, natural_max: float | None) -> bool:
        """The image never left the region where the feature is off (or stayed far below
        what dataset images reach)."""
        if not activation > self.floor:  # NaN fails too
            return True
        return (natural_max is not None and natural_max > 0
                and activation < self.fraction * natural_max)


def fallback(attempt: int, parameterization: str, natural: bool) -> tuple[str, bool]:
    """Attempt ``attempt``'s (parameterization, start from the feature's best dataset image):
    1 the recipe's; 2 the same from another seed; 3 the best dataset image when there is
    one, else the other parameterization (pixel <-> fft); 4 that other parameterization;
    later attempts repeat the last with new seeds."""
    other = "fft" if parameterization == "pixel" else "pixel"
    plan = [(parameterization, False), (parameterization, False)]
    plan += [("pixel", True), (other, False)] if natural else [(other, False)]
    return plan[min(attempt, len(plan)) - 1]


#: Given failing jobs, the best dataset image of those that have one (model input, [0, 1]).
NaturalImages = Callable[[Sequence[FeatureJob]], dict[FeatureJob, torch.Tensor]]


def visualize(opt: Optimizer, jobs: Sequence[FeatureJob], retry: Retry,
              natural_max: Mapping[FeatureJob, float] | None = None,
              natural_images: NaturalImages | None = None) -> list[Optimized]:
    """Optimize every job, then retry the failed ones (``fallback``), all failing features of
    an attempt batched together. A feature keeps its first successful attempt, or when every
    attempt failed the one that reached the highest activation (``failed`` stays set)."""
    natural_max = natural_max or {}
    best: dict[FeatureJob, Optimized] = {}
    for r in opt.run(jobs):
        r.failed = retry.failed(r.activation, natural_max.get(r.job))
        best[r.job] = r
    for attempt in range(2, retry.retries + 2):
        failing = [j for j in jobs if best[j].failed]
        if not failing:
            break
        wants_image = natural_images is not None and fallback(
            attempt, opt.recipe.parameterization, True)[1]
        images = natural_images(failing) if wants_image else {}
        plans: dict[tuple[str, bool], list[FeatureJob]] = {}
        for j in failing:
            plans.setdefault(fallback(attempt, opt.recipe.parameterization, j in images),
                             []).append(j)
        for (parameterization, from_image), group in plans.items():
            recipe = replace(opt.recipe, parameterization=parameterization)
            for r in opt.run(group, attempt=attempt, recipe=recipe,
                             init=images if from_image else None):
                r.failed = retry.failed(r.activation, natural_max.get(r.job))
                old = best[r.job]
                if r.failed and not r.activation > old.activation:
                    old.attempts = attempt
                else:
                    best[r.job] = r
    return [best[j] for j in jobs]


def perturbations(p: VisualizeParams) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The small changes of the ``kept_*`` metrics, by metric name."""
    return {"kept_blur": partial(gaussian_blur, sigma=p.blur_sigma),
            "kept_shift": partial(circular_shift, dy=p.shift, dx=p.shift),
            "kept_jpeg": partial(jpeg, quality=p.jpeg_quality)}


def perturbed_activations(opt: Optimizer, results: Sequence[Optimized],
                          changes: Mapping[str, Callable[[torch.Tensor], torch.Tensor]],
                          images_per_batch: int) -> list[dict[str, float]]:
    """Each result's objective (no augmentation) on each changed version of its image, by
    change name; the changed images go through the model in batches of at most
    ``images_per_batch``."""
    per = max(1, images_per_batch // max(1, len(changes)))
    out: list[dict[str, float]] = []
    with frozen(opt.model), torch.no_grad():
        for start in range(0, len(results), per):
            part = results[start : start + per]
            images = torch.stack([r.image for r in part]).to(opt.device)
            x = torch.cat([change(images) for change in changes.values()])
            parts = segments([r.job for r in part] * len(changes), 1, opt.device)
            values = job_objectives(opt.model, x, parts, precision=opt.precision)
            rows = values.view(len(changes), len(part)).T.tolist()
            out += [dict(zip(changes, row, strict=True)) for row in rows]
    return out


def select_jobs(ctx: TaskContext, params: VisualizeParams
                ) -> tuple[list[FeatureJob], dict[int, Ranking]]:
    """The features to visualize and, with a dataset, the ranking of their top images."""
    sites = resolve_sites(ctx.model.info, params.layers, params.site)
    named = {s.layer: explicit_features(params.features, s.n_features) for s in sites}
    has_data = ctx.load_dataset is not None
    if isinstance(params.features, TopFeatures) and not has_data:
        raise ValueError("`features: {top: ...}` ranks features on a dataset: give the study "
                         "entry a `dataset:`")
    rankings: dict[int, Ranking] = {}
    if has_data:  # also gives each feature's natural_max, the best dataset score
        to_rank = {s.layer: named[s.layer] or list(range(s.n_features)) for s in sites}
        rankings = rank_dataset(ctx, sites, to_rank, k=params.top_images,
                                keep_maps=params.panels)
    jobs = []
    for s in sites:
        features = named[s.layer]
        if features is None:
            features = rankings[s.layer].top_features(params.features.top)  # type: ignore[union-attr]
        jobs += [FeatureJob(s, f) for f in features]
    return jobs, rankings


def natural_maxima(rankings: Mapping[int, Ranking], jobs: Sequence[FeatureJob]
                   ) -> dict[FeatureJob, float]:
    """Each job's best dataset score (its ranking's top value), where the dataset had one."""
    out = {}
    for j in jobs:
        if j.site.layer in rankings:
            value = float(rankings[j.site.layer].select([j.feature]).values[0, 0])
            if math.isfinite(value):
                out[j] = value
    return out


def natural_image_source(ctx: TaskContext, rankings: Mapping[int, Ranking]) -> NaturalImages:
    """Fetches failing features' best dataset images (decoded only when a retry needs them)."""
    def fetch(jobs: Sequence[FeatureJob]) -> dict[FeatureJob, torch.Tensor]:
        best = {j: int(rankings[j.site.layer].select([j.feature]).indices[0, 0]) for j in jobs}
        images = model_inputs(ctx, best.values())
        return {j: images[i] for j, i in best.items() if i in images}
    return fetch


def write_panels(ctx: TaskContext, results: Sequence[Optimized],
                 rankings: dict[int, Ranking]) -> None:
    """One Figure 2 panel per feature: optimized image | top images | their activation maps."""
    ranked = {}
    for r in results:
        ranking = rankings[r.job.site.layer]
        ranked[r.job] = ranking.select([r.job.feature])
    wanted = [i for rk in ranked.values() for i in rk.indices.flatten().tolist()]
    images = model_inputs(ctx, wanted)
    for r in results:
        rk = ranked[r.job]
        shown = [(images[i], rk.maps[0, n].numpy())
                 for n, i in enumerate(rk.indices[0].tolist()) if i in images]
        panel = feature_panel(r.image, [im for im, _ in shown], [m for _, m in shown],
                              title=f"layer {r.job.site.layer}  feature {r.job.feature}")
        ctx.artifact("panel", panel, layer=r.job.site.layer, feature=r.job.feature)


def record(ctx: TaskContext, r: Optimized, natural_max: float | None,
           changed: Mapping[str, float]) -> None:
    """A feature's image and metrics: activation (and its trace), attempts,
    optimization_failed, natural_max and naturalness (with a dataset), kept_* (when the
    activation is above 0, the only case where a share of it means something)."""
    dims = {"layer": r.job.site.layer, "feature": r.job.feature}
    ctx.artifact("image", to_pil(r.image), **dims)
    ctx.metric("activation", r.activation, **dims)
    ctx.metric("attempts", r.attempts, **dims)
    ctx.metric("optimization_failed", float(r.failed), **dims)
    if natural_max is not None:
        ctx.metric("natural_max", natural_max, **dims)
        if natural_max > 0:
            ctx.metric("naturalness", r.activation / natural_max, **dims)
    if r.activation > 0:
        for name, value in changed.items():
            ctx.metric(name, value / r.activation, **dims)
    for step, value in r.trace:
        ctx.metric("activation", value, variant="trace", x=step, **dims)


def run(ctx: TaskContext) -> None:
    """The whole task: select (and rank), optimize, retry what failed, measure how the images
    survive small changes, report, draw the panels."""
    params: VisualizeParams = ctx.params  # type: ignore[assignment]
    jobs, rankings = select_jobs(ctx, params)
    opt = Optimizer(ctx.model, Recipe.from_params(params), ctx.seed,
                    max(1, ctx.batch_size // params.copies), ctx.device, ctx.precision,
                    ctx.progress)
    natural = natural_maxima(rankings, jobs)
    results = visualize(opt, jobs, Retry.from_params(params), natural,
                        natural_image_source(ctx, rankings) if rankings else None)
    changed = perturbed_activations(opt, results, perturbations(params), ctx.batch_size)
    for r, kept in zip(results, changed, strict=True):
        record(ctx, r, natural.get(r.job), kept)
    ctx.count("optimizations_retried", sum(r.attempts > 1 for r in results))
    ctx.count("optimizations_failed", sum(r.failed for r in results))
    if rankings and params.panels:
        write_panels(ctx, results, rankings)
