"""The ``train`` run: decode the (small) training set once, then AdamW with warm-up and cosine
decay, reporting the loss (and validation accuracy) after every epoch."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from runner.kinds.base import TaskContext
from runner.kinds.train.params import TrainParams
from runner.ops.metrics import topk_correct
from runner.ops.pixels import model_batch, to_unit


def run(ctx: TaskContext) -> None:
    """Train ``ctx.model`` on ``ctx.dataset`` and store its weights as ``checkpoint``."""
    p: TrainParams = ctx.params  # type: ignore[assignment]
    torch.manual_seed(p.seed)
    model = ctx.model
    device = torch.device(ctx.device)
    size = model.preprocess.size
    images, labels = _decode_all(ctx.dataset, size, ctx)
    val = _decode_all(ctx.extra_dataset("val"), size, ctx) if p.val else None

    steps_per_epoch = max(1, (len(labels) + p.batch_size - 1) // p.batch_size)
    total_steps = p.epochs * steps_per_epoch
    # the ETA's unit is a training step; a validation pass is forward-only, about a third
    # of a step per batch
    val_work = len(val[1]) / p.batch_size / 3 if val is not None else 0.0
    ctx.progress.set_total(total_steps, work=p.epochs * (steps_per_epoch + val_work))
    opt = torch.optim.AdamW(model.net.parameters(), lr=p.lr, weight_decay=p.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, _warmup_cosine(int(p.warmup_epochs * steps_per_epoch), total_steps)
    )
    gen = torch.Generator().manual_seed(p.seed)
    for epoch in range(1, p.epochs + 1):
        loss = _epoch(ctx, model, opt, sched, images, labels, gen, device)
        ctx.metric("loss", loss, x=epoch)
        if val is not None:
            top1, top5 = _accuracy(model, *val, p.batch_size, device)
            ctx.progress.advance(0, work=val_work)
            ctx.metric("val_top1", top1, x=epoch)
            ctx.metric("val_top5", top5, x=epoch)
            ctx.log(f"epoch {epoch}/{p.epochs}: loss {loss:.3f}, val top-1 {top1:.1f}%")
    if val is not None:
        ctx.metric("val_top1", top1)
        ctx.metric("val_top5", top5)
    model.eval()
    ctx.artifact("checkpoint", {k: v.detach().cpu() for k, v in model.net.state_dict().items()})


def _epoch(ctx: TaskContext, model: Any, opt: torch.optim.Optimizer,
           sched: torch.optim.lr_scheduler.LRScheduler, images: torch.Tensor,
           labels: torch.Tensor, gen: torch.Generator, device: torch.device) -> float:
    """One pass over the training set in a random order; returns the mean training loss."""
    p: TrainParams = ctx.params  # type: ignore[assignment]
    model.train()
    order = torch.randperm(len(labels), generator=gen)
    loss_sum, seen = 0.0, 0
    for start in range(0, len(labels), p.batch_size):
        idx = order[start : start + p.batch_size]
        x = images[idx].to(device).float().div_(255)
        if p.augment:
            x = _augment(x, gen)
        y = labels[idx].to(device)
        loss = F.cross_entropy(model(x), y, label_smoothing=p.label_smoothing)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        loss_sum += float(loss.detach()) * len(idx)
        seen += len(idx)
        ctx.progress.advance()
    return loss_sum / seen


def _decode_all(dataset: Any, size: int, ctx: TaskContext) -> tuple[torch.Tensor, torch.Tensor]:
    """Decode a dataset once into uint8 tensors at model resolution (small training sets)."""
    images, labels = [], []
    for batch in dataset.batches(256, workers=ctx.workers):
        ctx.count("skipped", batch.skipped)
        unit = model_batch([to_unit(im) for im in batch.images], size, 1.0, "bilinear")
        images.append(unit.mul_(255).round_().to(torch.uint8))
        labels.append(batch.labels)
    if not images:
        raise ValueError("the training dataset has no readable image")
    return torch.cat(images), torch.cat(labels)


def _augment(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random resized crop (scale 0.6-1, one crop per batch for speed) and per-image flip."""
    n, _, h, w = x.shape
    scale = float(torch.empty(1).uniform_(0.6, 1.0, generator=gen))
    ch, cw = max(1, int(h * scale ** 0.5)), max(1, int(w * scale ** 0.5))
    top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
    left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
    x = F.interpolate(x[:, :, top : top + ch, left : left + cw], size=(h, w), mode="bilinear",
                      align_corners=False)
    flip = torch.rand(n, generator=gen) < 0.5
    x[flip] = x[flip].flip(-1)
    return x


def _accuracy(model: Any, images: torch.Tensor, labels: torch.Tensor, batch_size: int,
              device: torch.device) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (percent) on decoded images."""
    model.eval()
    hits1 = hits5 = 0
    with torch.inference_mode():
        for start in range(0, len(labels), batch_size):
            x = images[start : start + batch_size].to(device).float().div_(255)
            correct = topk_correct(model(x), labels[start : start + batch_size].to(device), (1, 5))
            hits1 += int(correct[1].sum())
            hits5 += int(correct[5].sum())
    return 100.0 * hits1 / len(labels), 100.0 * hits5 / len(labels)


def _warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """The LambdaLR factor: linear warm-up over ``warmup`` steps, then cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return factor
