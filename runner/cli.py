"""The ``vitstudy`` command line. Click commands only; torch and timm are imported inside the
commands that need them, so that ``validate``, ``plan`` and a fully cached ``run`` stay fast.

Exit status: 0 all done, 1 some task failed, 2 invalid input (nothing run, nothing written).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import click

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

EXIT_FAILED = 1
EXIT_INVALID = 2


class UserError(click.ClickException):
    """An invalid study, model, dataset or argument: printed as one paragraph, exit 2."""

    exit_code = EXIT_INVALID

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _load(study_file: str) -> Any:
    from runner.spec import SpecError, load_study

    try:
        return load_study(study_file)
    except SpecError as e:
        raise UserError(str(e)) from None


def _plan(loaded: Any) -> Any:
    from runner.plan import make_plan
    from runner.spec import SpecError

    try:
        return make_plan(loaded)
    except SpecError as e:
        raise UserError(str(e)) from None
    except ValueError as e:  # DatasetError, ModelError: identity of a missing file or folder
        raise UserError(f"{loaded.path}: {e}") from None


def _engine(ctx: click.Context, *, must_exist: bool = False) -> Any:
    from runner.db import connect, database_url

    url = database_url(ctx.obj["db"])
    if must_exist and url.startswith("sqlite:///") and not Path(url[len("sqlite:///"):]).exists():
        return None
    try:
        return connect(url)
    except RuntimeError as e:
        raise UserError(str(e)) from None


def _store(ctx: click.Context) -> Any:
    from runner.store import Store

    return Store(ctx.obj["artifacts"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="VITSTUDY_DB", default=None,
              help="SQLAlchemy URL of the result database [env VITSTUDY_DB; "
                   "default sqlite:///results.db].")
@click.option("--artifacts", envvar="VITSTUDY_ARTIFACTS", default=None,
              help="artifact store folder [env VITSTUDY_ARTIFACTS; default ./artifacts].")
@click.version_option(package_name="vitstudy")
@click.pass_context
def main(ctx: click.Context, db: str | None, artifacts: str | None) -> None:
    """vitstudy: declarative studies of what vision transformers learn."""
    ctx.obj = {"db": db, "artifacts": artifacts}


@main.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
def validate(study_file: str) -> None:
    """Check a study file; print its tasks count or the first problem (exit 2)."""
    loaded = _load(study_file)
    plan = _plan(loaded)
    click.echo(f"{study_file}: ok: study {loaded.name!r}, {len(loaded.study.studies)} "
               f"entr{'y' if len(loaded.study.studies) == 1 else 'ies'}, {len(plan.tasks)} tasks")


@main.command()
def schema() -> None:
    """Print the study file's JSON Schema (for editor completion)."""
    from runner.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command()
def kinds() -> None:
    """List the study kinds with their version and params."""
    from runner.kinds import available_kinds, get_kind

    for name in available_kinds():
        kind = get_kind(name)
        click.echo(f"{name} (version {kind.version}): {kind.summary}")
        for field_name, f in kind.Params.model_fields.items():
            default = f.get_default(call_default_factory=True)
            click.echo(f"    {field_name} = {default!r}: {f.description or ''}")


@main.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.pass_context
def plan(ctx: click.Context, study_file: str) -> None:
    """List every task: kind, model, params, short key, cached / to run."""
    p, statuses = _plan_and_status(ctx, study_file)
    rows = [(t.kind, t.model or "-", t.dataset or "-", t.params_summary(), t.short,
             "cached" if statuses[t.key].cached else f"to run ({statuses[t.key].reason})")
            for t in p.tasks]
    _print_table(["kind", "model", "dataset", "params", "key", "status"], rows)
    n_cached = sum(s.cached for s in statuses.values())
    click.echo(f"{len(p.tasks)} tasks: {n_cached} cached, {len(p.tasks) - n_cached} to run")


def _plan_and_status(ctx: click.Context, study_file: str) -> tuple[Any, dict[str, Any]]:
    """The study's plan and each task's cache status (all new when there is no database)."""
    p = _plan(_load(study_file))
    return p, _statuses(ctx, p)


def _statuses(ctx: click.Context, p: Any) -> dict[str, Any]:
    from runner.plan import TaskStatus, cache_status

    engine = _engine(ctx, must_exist=True)
    if engine is None:
        return {t.key: TaskStatus(False, "new") for t in p.tasks}
    return cache_status(p, engine, _store(ctx))


@main.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.pass_context
def why(ctx: click.Context, study_file: str) -> None:
    """For each task that is not cached, what differs from the nearest cached task."""
    from runner.db import done_tasks_like
    from runner.plan import explain

    p, statuses = _plan_and_status(ctx, study_file)
    engine = _engine(ctx, must_exist=True)
    pending = [t for t in p.tasks if not statuses[t.key].cached]
    if not pending:
        click.echo("every task is cached")
        return
    for t in pending:
        click.echo(f"{t.kind} / {t.model or '-'} / {t.short}: {statuses[t.key].reason}")
        cands = done_tasks_like(engine, t.kind, t.model) if engine is not None else []
        click.echo("  " + explain(t, cands).replace("\n", "\n  "))


@main.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, auto.")
@click.option("--batch-size", default=64, show_default=True, type=click.IntRange(1))
@click.option("--workers", default=None, type=click.IntRange(0),
              help="data-loading (decode) processes. [default: 0 on a CPU; on a GPU one per "
                   "core but one, at most 8]")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local",
              show_default=True)
@click.option("--address", default=None, help="Ray cluster address (with --executor ray).")
@click.option("--actors", type=click.IntRange(1), default=None,
              help="with --executor ray: at most this many Ray workers "
                   "(default: as many as the cluster's GPUs, or CPUs, hold).")
@click.option("--gpus-per-actor", type=click.FloatRange(0), default=None,
              help="with --executor ray: GPU share of each worker, e.g. 0.5 "
                   "(default 1 on a cluster with GPUs, else 0).")
@click.option("--report/--no-report", "with_report", default=False,
              help="write the study's report after the run.")
@click.pass_context
def run(ctx: click.Context, study_file: str, device: str, batch_size: int, workers: int | None,
        executor: str, address: str | None, actors: int | None, gpus_per_actor: float | None,
        with_report: bool) -> None:
    """Run every task of a study that is not cached."""
    from runner.plan import cache_status

    p, statuses = _plan_and_status(ctx, study_file)
    todo = [t for t in p.tasks if not statuses[t.key].cached]
    if not todo:  # the common rerun: answer before importing the executor
        click.echo(f"nothing to run: all {len(p.tasks)} tasks cached")
        if with_report:
            _write_report(ctx, p, cache_status)
        ctx.exit(0)
    _check(p, todo)
    from runner.execute.display import make_display
    from runner.execute.local import RunOptions, execute

    engine = _engine(ctx)
    store = _store(ctx)
    options = RunOptions(device=device, batch_size=batch_size, workers=workers,
                         command=" ".join(["vitstudy"] + sys.argv[1:]))
    if executor == "ray":
        from runner.execute.ray import RayExecutorError, execute_ray

        try:
            summary = execute_ray(p, engine, store, options, make_display(), address=address,
                                  actors=actors, gpus_per_actor=gpus_per_actor)
        except RayExecutorError as e:
            raise UserError(str(e)) from None
    else:
        summary = execute(p, engine, store, options, make_display())
    click.echo(f"{len(summary.done)} done, {len(summary.failed)} failed, "
               f"{len(summary.elsewhere)} taken by another runner, {summary.cached} cached")
    if with_report:
        _write_report(ctx, p, cache_status)
    ctx.exit(summary.exit_code)


def _check(p: Any, todo: list[Any]) -> None:
    from runner.plan import check_tasks
    from runner.spec import SpecError

    try:
        check_tasks(p, todo)
    except SpecError as e:
        raise UserError(str(e)) from None


@main.command()
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--out", default=None, help="folder (default reports/<study name>).")
@click.pass_context
def report(ctx: click.Context, study_file: str, out: str | None) -> None:
    """Build the study's tables and figures from the database."""
    from runner.plan import cache_status

    loaded = _load(study_file)
    p = _plan(loaded)
    _write_report(ctx, p, cache_status, out)


def _write_report(ctx: click.Context, p: Any, cache_status: Any, out: str | None = None) -> None:
    from runner.report import build_report
    from runner.report.paper import library_name

    engine = _engine(ctx)
    out_dir = Path(out or Path("reports") / p.study.name)
    names = {alias: library_name(spec) for alias, spec in p.study.study.models.items()}
    index = build_report(p.study.name, [t.key for t in p.tasks], engine, _store(ctx).root,
                         out_dir, model_names=names)
    click.echo(f"report: {Path(index).resolve()}")


@main.command()
@click.argument("study_file", required=False, type=click.Path(dir_okay=False))
@click.option("--kind", default=None)
@click.option("--name", "metric", default=None, help="metric name (top1, top5_norm, ...)")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def results(ctx: click.Context, study_file: str | None, kind: str | None, metric: str | None,
            fmt: str) -> None:
    """Print metrics (the `results` view) as a table, CSV or JSON."""
    import runner.results as R

    study = _load(study_file).name if study_file else None
    df = R.results(_engine(ctx), study=study, kind=kind, name=metric)
    _print_frame(df, fmt)


@main.command()
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str) -> None:
    """Run a SQL query against the result database."""
    import pandas as pd
    from sqlalchemy.exc import SQLAlchemyError

    from runner.db import query as run_query

    try:
        cols, rows = run_query(_engine(ctx), query)
    except SQLAlchemyError as e:
        raise UserError(f"SQL error: {getattr(e, 'orig', e)}") from None
    _print_frame(pd.DataFrame(rows, columns=cols), fmt)


@main.command()
@click.option("--dry-run", is_flag=True, help="only say what would be removed.")
@click.pass_context
def gc(ctx: click.Context, dry_run: bool) -> None:
    """Remove artifact files that no database row refers to."""
    from runner.db import referenced_paths

    rep = _store(ctx).gc(referenced_paths(_engine(ctx)), dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {rep.removed} file(s), {rep.bytes_freed / 1e6:.1f} MB; kept {rep.kept}")


@main.group("db")
def db_group() -> None:
    """The result database: schema version and upgrades."""


@db_group.command("upgrade")
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Upgrade the database's schema to this vitstudy's version (back the database up first)."""
    from sqlalchemy.engine import make_url

    from runner.db import connect, database_url, upgrade

    url = database_url(ctx.obj["db"])
    shown = make_url(url).render_as_string(hide_password=True)
    try:
        before, after = upgrade(connect(url, create=False))
    except RuntimeError as e:  # SchemaError (newer schema), no driver
        raise UserError(f"{shown}: {e}") from None
    if before == after:
        click.echo(f"{shown}: schema version {after}, up to date")
    elif before is None:
        click.echo(f"{shown}: created, schema version {after}")
    else:
        click.echo(f"{shown}: upgraded schema version {before} -> {after}")


@main.command()
@click.argument("model_spec")
@click.option("--study", "study_file", default=None, type=click.Path(dir_okay=False),
              help="read MODEL_SPEC as a model name in this study file.")
def sites(model_spec: str, study_file: str | None) -> None:
    """List a model's feature sites with shapes and feature counts.

    MODEL_SPEC is a model name of a study (with --study), a timm name
    (`vit_base_patch16_224`), or `source:name[@tag]` (`open_clip:ViT-B-32-quickgelu@openai`,
    `torchvision:resnet50`). No weights are downloaded: sites come from the architecture.
    """
    from runner.models import ModelError, format_sites, inspect_model
    from runner.models.refs import parse_model_ref

    base_dir = None
    if study_file:
        loaded = _load(study_file)
        if model_spec not in loaded.study.models:
            raise UserError(f"{study_file}: no model named {model_spec!r}; known: "
                            f"{', '.join(sorted(loaded.study.models))}")
        spec, base_dir = loaded.study.models[model_spec], loaded.base_dir
    try:
        if not study_file:
            spec = parse_model_ref(model_spec)
        click.echo(format_sites(inspect_model(spec, base_dir=base_dir)))
    except ModelError as e:
        raise UserError(str(e)) from None


def _print_frame(df: Any, fmt: str) -> None:
    if fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(df.to_json(orient="records", indent=1))
    else:
        _print_table(list(df.columns), [tuple(r) for r in df.itertuples(index=False)])


def _print_table(headers: list[str], rows: list[tuple]) -> None:
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in cells:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def _cell(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):  # NULL, or NaN from pandas
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


if __name__ == "__main__":  # pragma: no cover
    main()
