"""The ``spatial_drop`` run: rank the features' top images, then measure each feature's active
patches as a growing share of them is blacked out."""

from __future__ import annotations

from collections.abc import Callable

import torch

from runner.kinds.base import TaskContext, precision_scope, truncated_forward_cost
from runner.kinds.ranking import Ranking, model_inputs, rank_dataset
from runner.kinds.sites import explicit_features, resolve_sites
from runner.kinds.spatial_drop.params import SpatialDropParams
from runner.models.base import FeatureRead, LoadedModel, SiteInfo
from runner.ops.activation import patch_values
from runner.ops.augment import image_generator
from runner.ops.patches import blank_patches, drop_active, linearity_r2


def active_stats(model: LoadedModel, site: SiteInfo, images: torch.Tensor,
                 features: torch.Tensor, threshold: float, *, batch_size: int, device: str,
                 precision: str = "fp32") -> tuple[torch.Tensor, torch.Tensor]:
    """For each image and its feature: (number of patches above ``threshold``, sum of their
    activations), forward stopped after the site's block, at ``precision``."""
    counts, sums = [], []
    with torch.no_grad():
        for start in range(0, images.shape[0], batch_size):
            x = images[start : start + batch_size].to(device)
            read = FeatureRead(site.name, slice(0, x.shape[0]),
                               features[start : start + batch_size].to(device))
            with precision_scope(device, precision):
                (values,) = model.read_features(x, [read])
            acts = patch_values(values, site.prefix_tokens, site.tokens).float()
            active = acts > threshold
            counts.append(active.sum(1).cpu().double())
            sums.append((acts * active).sum(1).cpu().double())
    return torch.cat(counts), torch.cat(sums)


def drop_curves(model: LoadedModel, ranking: Ranking, images: dict[int, torch.Tensor], *,
                percents: list[float], seeds: int, threshold: float, seed: int,
                batch_size: int, device: str = "cpu", precision: str = "fp32",
                on_batch: Callable[[int], None] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(count_ratio, sum_ratio) per (feature, percent), each averaged over the feature's images
    with at least one active patch and over seeds, and how many such images each feature had.
    Features without any are NaN."""
    site = ranking.site
    rows, pixels, feats, active = [], [], [], []
    for row, feature in enumerate(ranking.features):
        for rank, index in enumerate(ranking.indices[row].tolist()):
            if index in images:
                rows.append(row)
                pixels.append(images[index])
                feats.append(feature)
                active.append(ranking.maps[row, rank] > threshold)
    n_feat, n_pct = len(ranking.features), len(percents)
    if not rows:
        nan = torch.full((n_feat, n_pct), float("nan"), dtype=torch.float64)
        return nan, nan.clone(), torch.zeros(n_feat)
    x = torch.stack(pixels)
    feats_t, rows_t, active_t = torch.tensor(feats), torch.tensor(rows), torch.stack(active)

    def measure(keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = active_stats(model, site, blank_patches(x, keep), feats_t, threshold,
                           batch_size=batch_size, device=device, precision=precision)
        if on_batch is not None:
            on_batch(x.shape[0])
        return out

    count0, sum0 = measure(active_t)
    valid = count0 > 0
    count_ratio = torch.zeros(len(rows), seeds, n_pct, dtype=torch.float64)
    sum_ratio = torch.zeros_like(count_ratio)
    for s in range(seeds):
        generator = image_generator(seed, site.layer, s)
        for j, percent in enumerate(percents):
            count, total = measure(drop_active(active_t, percent, generator))
            count_ratio[:, s, j] = count / count0.clamp(min=1)
            sum_ratio[:, s, j] = total / sum0.where(valid, torch.ones_like(sum0))
    per_image_count, per_image_sum = count_ratio.mean(1), sum_ratio.mean(1)  # (P, n_pct)
    n_valid = torch.zeros(n_feat).index_add_(0, rows_t, valid.float())
    weights = torch.zeros(n_feat, len(rows), dtype=torch.float64)
    weights[rows_t, torch.arange(len(rows))] = valid.double()
    weights = weights / weights.sum(1, keepdim=True)  # NaN rows for features with no image
    return weights @ per_image_count, weights @ per_image_sum, n_valid


def ranked_features(ctx: TaskContext, params: SpatialDropParams,
                    sites: list[SiteInfo]) -> dict[int, Ranking]:
    """The ranking pass, each layer's ranking kept to its selected (or ``top``) features."""
    named = {s.layer: explicit_features(params.features, s.n_features) for s in sites}
    to_rank = {s.layer: named[s.layer] or list(range(s.n_features)) for s in sites}
    rankings = rank_dataset(ctx, sites, to_rank, k=params.images, keep_maps=True)
    for s in sites:
        if named[s.layer] is None:
            top = rankings[s.layer].top_features(params.features.top)  # type: ignore[union-attr]
            rankings[s.layer] = rankings[s.layer].select(top)
    return rankings


def report_curves(ctx: TaskContext, params: SpatialDropParams, ranking: Ranking,
                  curves_by_name: dict[str, torch.Tensor], n_valid: torch.Tensor) -> None:
    """One layer's per-feature curves, their layer mean, and the mean's linearity."""
    layer = ranking.site.layer
    percents = torch.tensor(params.percents, dtype=torch.float64)
    for name, curves in curves_by_name.items():
        for row, feature in enumerate(ranking.features):
            for x, value in zip(params.percents, curves[row].tolist(), strict=True):
                if value == value:  # NaN: the feature had no image with active patches
                    ctx.metric(f"{name}_ratio", value, layer=layer, feature=feature, x=x)
        kept = curves[n_valid > 0]
        if kept.shape[0] == 0:
            continue
        layer_mean = kept.mean(0)
        for x, value in zip(params.percents, layer_mean.tolist(), strict=True):
            ctx.metric(f"{name}_ratio", value, layer=layer, x=x, variant="layer_mean")
        ctx.metric("linearity_r2", linearity_r2(percents, layer_mean), layer=layer,
                   variant=name)


def run(ctx: TaskContext) -> None:
    """The whole task: rank, decode the top images, measure and report each layer's curves."""
    params: SpatialDropParams = ctx.params  # type: ignore[assignment]
    sites = resolve_sites(ctx.model.info, params.layers, params.site)
    rankings = ranked_features(ctx, params, sites)
    images = model_inputs(
        ctx, [i for r in rankings.values() for i in r.indices.flatten().tolist()])
    passes = 1 + params.seeds * len(params.percents)
    per_layer = {layer: passes * r.indices.numel() for layer, r in rankings.items()}
    ctx.progress.set_total(ctx.progress.done + sum(per_layer.values()),  # after ranking
                           work=sum(n * truncated_forward_cost(layer)
                                    for layer, n in per_layer.items()))
    for s in sites:
        ranking = rankings[s.layer]
        count, total, n_valid = drop_curves(
            ctx.model, ranking, images, percents=params.percents, seeds=params.seeds,
            threshold=params.threshold, seed=ctx.seed, batch_size=ctx.batch_size,
            device=ctx.device, precision=ctx.precision,
            on_batch=lambda n, layer=s.layer: ctx.progress.advance(
                n, work=n * truncated_forward_cost(layer)))
        ctx.count("images_without_active_patches",
                  int(ranking.indices.numel() - n_valid.sum()))
        report_curves(ctx, params, ranking, {"count": count, "sum": total}, n_valid)
