"""The ``visualize`` run: features maximized in batches of jobs x augmented copies, with, when
a dataset is given, the ranking pass that picks ``top`` features and fills the panels."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from runner.kinds.base import TaskContext, precision_scope, truncated_forward_cost
from runner.kinds.ranking import Ranking, model_inputs, rank_dataset
from runner.kinds.sites import TopFeatures, explicit_features, resolve_sites
from runner.kinds.visualize.params import VisualizeParams
from runner.models.base import FeatureRead, LoadedModel, SiteInfo
from runner.ops.activation import patch_mean
from runner.ops.augment import AugmentSettings, augment, draw_augment, image_generator
from runner.ops.image_param import make_image_param
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
    """A visualized feature: its image, the objective on it, and the objective during the run."""

    job: FeatureJob
    image: torch.Tensor  # (3, H, W) in [0, 1], CPU
    activation: float  # patch-token mean on the final image, no augmentation
    trace: list[tuple[int, float]] = field(default_factory=list)  # (step, augmented objective)


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
                      precision: str = "fp32",
                      on_step: Callable[[int], None] | None = None) -> list[Optimized]:
    """Maximize every job's feature in one batch (jobs x copies). Each image's randomness comes
    from its own generator (seed, layer, feature), so results do not depend on batching.
    ``truncated=False`` runs every forward in full (the authors' way, for comparison). The
    model forwards run at ``precision``; the image parameters stay float32."""
    settings = recipe.augment or AugmentSettings()
    copies, size = settings.copies, (model.preprocess.size, model.preprocess.size)
    gens = [image_generator(seed, j.site.layer, j.feature) for j in jobs]
    results = [Optimized(j, torch.empty(0), float("nan")) for j in jobs]
    augmented, plain = segments(jobs, copies, device), segments(jobs, 1, device)
    with frozen(model):
        param = make_image_param(recipe.parameterization, gens, size, device)
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


def step_cost(group: Sequence[FeatureJob]) -> float:
    """Relative cost of one optimizer step of a group: its images times the depth its
    truncated forward reaches (deep layers cost more; the ETA weighs steps by this)."""
    return len(group) * truncated_forward_cost(max(j.site.layer for j in group))


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
    if has_data and (params.panels or isinstance(params.features, TopFeatures)):
        to_rank = {s.layer: named[s.layer] or list(range(s.n_features)) for s in sites}
        rankings = rank_dataset(ctx, sites, to_rank, k=params.top_images, keep_maps=True)
    jobs = []
    for s in sites:
        features = named[s.layer]
        if features is None:
            features = rankings[s.layer].top_features(params.features.top)  # type: ignore[union-attr]
        jobs += [FeatureJob(s, f) for f in features]
    return jobs, rankings


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


def run(ctx: TaskContext) -> None:
    """The whole task: select (and rank), optimize group by group, report, draw the panels."""
    params: VisualizeParams = ctx.params  # type: ignore[assignment]
    recipe = Recipe.from_params(params)
    jobs, rankings = select_jobs(ctx, params)
    groups = chunks(jobs, max(1, ctx.batch_size // params.copies))
    ctx.progress.set_total(ctx.progress.done + len(groups) * params.steps,  # after ranking
                           work=params.steps * sum(map(step_cost, groups)))
    results: list[Optimized] = []
    for group in groups:
        results += optimize_features(
            ctx.model, group, recipe, seed=ctx.seed, device=ctx.device,
            precision=ctx.precision,
            on_step=lambda _, cost=step_cost(group): ctx.progress.advance(work=cost))
    for r in results:
        layer, feature = r.job.site.layer, r.job.feature
        ctx.artifact("image", to_pil(r.image), layer=layer, feature=feature)
        ctx.metric("activation", r.activation, layer=layer, feature=feature)
        for step, value in r.trace:
            ctx.metric("activation", value, layer=layer, feature=feature, variant="trace",
                       x=step)
    if rankings and params.panels:
        write_panels(ctx, results, rankings)
