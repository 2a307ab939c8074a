"""The ``vitstudy`` command line. Click commands only; torch and timm are imported inside the
commands that need them, so that ``validate``, ``plan`` and a fully cached ``run`` stay fast.

Exit status: 0 all done, 1 some task failed, 2 invalid input (nothing run, nothing written),
130 interrupted by Ctrl-C (SIGINT), 143 stopped by SIGTERM (tasks in flight ``interrupted``).
"""

from __future__ import annotations

import errno
import json
import os
import sys
from pathlib import Path
from typing import Any

import click

from runner.errors import DatabaseMissing, DatabaseUnusable, SchemaError, SpecError, UserError

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

EXIT_FAILED = 1
EXIT_INVALID = 2


class UsageProblem(click.ClickException):
    """An invalid study, model, dataset or argument: printed as one paragraph, exit 2. Every
    ``runner.errors.UserError`` a command lets through becomes one (``_Main.invoke``)."""

    exit_code = EXIT_INVALID

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


def _load(study_file: str, max_tasks: int | None = None) -> Any:
    """The validated study, or exit 2; a study of more than ``max_tasks`` tasks (default
    $VITSTUDY_MAX_TASKS, else 10,000) is refused before its sweeps are expanded."""
    from runner.spec import MAX_TASKS, load_study

    if max_tasks is None:
        env = os.environ.get("VITSTUDY_MAX_TASKS") or str(MAX_TASKS)
        if not env.strip().isdigit() or int(env) < 1:
            raise UsageProblem(f"VITSTUDY_MAX_TASKS={env!r} is not a positive whole number")
        max_tasks = int(env)
    return load_study(study_file, max_tasks=max_tasks)


def _plan(loaded: Any, precision: str = "fp32") -> Any:
    """The study's plan (its keys for ``precision``); a user error the planner finds outside
    any one entry names the file."""
    from runner.plan import make_plan

    try:
        return make_plan(loaded, precision)
    except SpecError:
        raise
    except UserError as e:
        raise UsageProblem(f"{loaded.path}: {e}") from None


def _engine(ctx: click.Context, *, write: bool = False, create: bool = False,
            missing_ok: bool = False) -> Any:
    """The result database's engine: read-only unless ``write`` (only `run`, `sql --write` and
    `db upgrade` write). A missing database is created only with ``create`` (`run`); otherwise
    it is a ``UsageProblem`` naming the URL, or None with ``missing_ok`` (plan/why: all tasks new).
    """
    from runner.db import connect, database_url, hide_password, require_existing

    url = database_url(ctx.obj["db"])
    try:
        if write and not create:
            require_existing(url)
        return connect(url, create=create, read_only=not write)
    except DatabaseMissing as e:
        if missing_ok:
            return None
        raise UsageProblem(f"{e}. Commands that only read never create a database: check --db "
                           "(or VITSTUDY_DB); `vitstudy run` creates one.") from None
    except (SchemaError, DatabaseUnusable) as e:  # a newer schema, no driver, a bad URL
        raise UsageProblem(f"{hide_password(url)}: {e}") from None


_URL_ADVICE = "Give a SQLAlchemy URL such as sqlite:///results.db or postgresql://user@host/name."
_FULL_ADVICE = "Free disk space and run again; tasks already done are kept."
#: What to do about a database fault, by a phrase of the driver's message (lower case).
_DB_ADVICE = (
    ("could not parse", _URL_ADVICE),
    ("can't load plugin", _URL_ADVICE),
    ("unable to open database file", "Check that its folder exists and can be written."),
    ("file is not a database", "The file is not a SQLite database: point --db at the "
                               "database `vitstudy run` wrote."),
    ("malformed", "The file is damaged (truncated or overwritten): restore it from a backup."),
    ("disk is full", _FULL_ADVICE),
    ("readonly", "The database or its folder is read-only: use one you can write to."),
    ("does not exist", "Check the database name, or create the database first."),
    ("connect", "Check that the server is running and reachable at that address."),
)
#: What to do about a file-system fault, by errno.
_OS_ADVICE = {
    errno.ENOSPC: _FULL_ADVICE,
    errno.EDQUOT: _FULL_ADVICE,
    errno.EROFS: "The file system is read-only: choose a folder you can write to.",
    errno.EACCES: "Choose a folder you can write to.",
    errno.EPERM: "Choose a folder you can write to.",
    errno.ENOENT: "Check that the path exists.",
    errno.ENOTDIR: "A part of the path is a file, not a folder: check the path.",
}


def _fault_message(error: Exception, db_option: str | None) -> str | None:
    """The one paragraph for a database or file-system fault; None for any other error (a
    programming error must still show its traceback)."""
    sa_exc = sys.modules.get("sqlalchemy.exc")  # not imported: cannot be a database fault
    faults = (sa_exc.DatabaseError, sa_exc.ArgumentError) if sa_exc else ()
    if faults and isinstance(error, faults):  # DatabaseError covers OperationalError
        from runner.db import database_url, hide_password

        detail = _driver_message(error)
        advice = next((a for phrase, a in _DB_ADVICE if phrase in detail.lower()),
                      "Check --db (or VITSTUDY_DB) and the database.")
        return f"{hide_password(database_url(db_option))}: {detail}. {advice}"
    if isinstance(error, OSError):
        where = error.filename if error.filename is not None else "file system"
        advice = _OS_ADVICE.get(error.errno or 0, "Check the path and the disk.")
        return f"{where}: {error.strerror or error}. {advice}"
    return None


def _driver_message(error: Exception) -> str:
    """The first line of a database error as its driver said it (no SQL, no traceback)."""
    text = str(getattr(error, "orig", None) or error).strip()
    return (text.splitlines() or [type(error).__name__])[0].rstrip(".")


class _Main(click.Group):
    """The ``vitstudy`` group: a user error (``runner.errors.UserError``), or a database or
    file-system fault, in any command becomes one paragraph on stderr and exit 2, not a
    traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # Ctrl-C before a run started (a run handles its own)
            click.echo("interrupted", err=True)
            raise click.exceptions.Exit(130) from None
        except BrokenPipeError:  # `vitstudy results | head`: the reader has what it wanted
            _silence_stdout()
            raise click.exceptions.Exit(0) from None
        except UserError as e:  # a mistake the user can fix: its message, exit 2
            raise UsageProblem(str(e)) from None
        except Exception as e:
            message = _fault_message(e, (ctx.obj or {}).get("db"))
            if message is None:
                raise
            raise UsageProblem(message) from None


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that flushing it at exit after a closed pipe is quiet."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


def _store(ctx: click.Context) -> Any:
    from runner.store import Store

    return Store(ctx.obj["artifacts"])


_DB_HELP = ("SQLAlchemy URL of the result database [env VITSTUDY_DB; "
            "default sqlite:///results.db].")
_ARTIFACTS_HELP = "artifact store folder [env VITSTUDY_ARTIFACTS; default ./artifacts]."


def _set_global(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    """Store a global option typed after the command name in ``ctx.obj`` (shared with the
    group), where it wins over the value given before the name or by the environment."""
    if value is not None:
        ctx.ensure_object(dict)[param.name] = value


def global_options(command: Any) -> Any:
    """Accept ``--db`` and ``--artifacts`` after the command name as well, where people type
    them (``vitstudy run FILE --db URL``); the group's value (or env) is the default."""
    for name, text in (("--artifacts", _ARTIFACTS_HELP), ("--db", _DB_HELP)):
        command = click.option(name, default=None, expose_value=False, callback=_set_global,
                               help=text)(command)
    return command


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--db", envvar="VITSTUDY_DB", default=None, help=_DB_HELP)
@click.option("--artifacts", envvar="VITSTUDY_ARTIFACTS", default=None, help=_ARTIFACTS_HELP)
@click.version_option(package_name="vitstudy")
@click.pass_context
def main(ctx: click.Context, db: str | None, artifacts: str | None) -> None:
    """vitstudy: declarative studies of what vision transformers learn."""
    ctx.obj = {"db": db, "artifacts": artifacts}


def _max_tasks_option(command: Any) -> Any:
    """Adds ``--max-tasks`` (the sweep-size limit of ``runner.spec``) to validate, plan, run."""
    return click.option(
        "--max-tasks", type=click.IntRange(1), default=None, envvar="VITSTUDY_MAX_TASKS",
        help="refuse a study of more tasks than this [env VITSTUDY_MAX_TASKS; default 10000]."
    )(command)


#: ``--precision``: what run computes in, so also what plan, why and report look up (its keys).
_precision_option = click.option(
    "--precision", type=click.Choice(["fp32", "tf32", "bf16"]), default="fp32",
    show_default=True, help="arithmetic of the model forwards: fp32; tf32 (CUDA matmuls in "
    "TF32); bf16 (autocast). tf32 and bf16 are part of the task keys: their results are "
    "stored beside fp32's.")


class _BatchSize(click.ParamType):
    """``--batch-size``: a whole number from 1, or ``auto``."""

    name = "integer|auto"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | str:
        if isinstance(value, int) or str(value).strip().lower() != "auto":
            return click.IntRange(1).convert(value, param, ctx)
        return "auto"


_check_device_option = click.option(
    "--device", default=None, help="also check that this device (cpu, cuda, cuda:1, mps, "
    "auto) is usable here, as run would.")


@main.command()
@global_options
@click.argument("study_file", type=click.Path())
@_check_device_option
@_max_tasks_option
def validate(study_file: str, device: str | None, max_tasks: int | None) -> None:
    """Check a study file as run would (models, weights, sites, datasets, params) without
    running anything; print its tasks count or the first problem (exit 2)."""
    loaded = _load(study_file, max_tasks)
    plan = _plan(loaded)
    _check(plan, plan.tasks, device)
    click.echo(f"{study_file}: ok: study {loaded.name!r}, {len(loaded.study.studies)} "
               f"entr{'y' if len(loaded.study.studies) == 1 else 'ies'}, {len(plan.tasks)} tasks")


@main.command()
@global_options
def schema() -> None:
    """Print the study file's JSON Schema (for editor completion)."""
    from runner.spec import json_schema

    click.echo(json.dumps(json_schema(), indent=2))


@main.command()
@global_options
def kinds() -> None:
    """List the study kinds with their version and params, as the YAML a study entry takes
    (defaults filled in, each param's description as a comment); one document per kind."""
    from runner.kinds import available_kinds, get_kind

    documents = []
    for name in available_kinds():
        kind = get_kind(name)
        documents.append(f"# {name} (version {kind.version}): {kind.summary}\n"
                         f"kind: {name}\n" + _params_yaml(kind.Params))
    click.echo("---\n".join(documents), nl=False)


def _params_yaml(params_cls: Any) -> str:
    """``params:`` with every default of a kind's pydantic params model, as a user would write
    it in a study file, each field preceded by its description as ``#`` comments."""
    import textwrap

    import yaml

    defaults = params_cls().model_dump(mode="json", by_alias=True)
    described = {f.alias or name: f.description or ""
                 for name, f in params_cls.model_fields.items()}

    class TopLevelBlock(yaml.SafeDumper):
        """One line per param; lists and mappings of scalars inside stay in flow style."""

        def represent_mapping(self, tag: str, mapping: Any, flow_style: Any = None) -> Any:
            return super().represent_mapping(tag, mapping,
                                              False if mapping is defaults else flow_style)

    lines = ["params:"]
    dumped = yaml.dump(defaults, Dumper=TopLevelBlock, default_flow_style=None,
                       sort_keys=False, width=1000)
    for line in dumped.splitlines():
        top_key = line.split(":", 1)[0] if line[:1] not in (" ", "-") else None
        lines += [f"  # {text}" for text in textwrap.wrap(described.get(top_key, ""), 92)]
        lines.append("  " + line)
    return "\n".join(lines) + "\n"


@main.command()
@global_options
@click.argument("study_file", type=click.Path())
@_check_device_option
@_precision_option
@_max_tasks_option
@click.pass_context
def plan(ctx: click.Context, study_file: str, device: str | None, precision: str,
         max_tasks: int | None) -> None:
    """Check the study as run would, then list every task: kind, model, params, short key,
    cached / to run."""
    p = _plan(_load(study_file, max_tasks), precision)
    _check(p, p.tasks, device)
    statuses = _statuses(ctx, p)
    rows = [(t.kind, t.model or "-", t.dataset or "-", t.params_summary(), t.short,
             "cached" if statuses[t.key].cached else f"to run ({statuses[t.key].reason})")
            for t in p.tasks]
    _print_table(["kind", "model", "dataset", "params", "key", "status"], rows)
    n_cached = sum(s.cached for s in statuses.values())
    click.echo(f"{len(p.tasks)} tasks: {n_cached} cached, {len(p.tasks) - n_cached} to run")
    _spare_shutdown_collections()


def _spare_shutdown_collections() -> None:
    """Move every object into the collector's permanent generation as the command ends: the
    interpreter's shutdown would walk them all in full collections (a fifth of a cached
    rerun's time) to free nothing that outlives the process."""
    import gc

    gc.freeze()


def _plan_and_status(ctx: click.Context, study_file: str, max_tasks: int | None = None,
                     precision: str = "fp32") -> tuple[Any, dict[str, Any]]:
    """The study's plan and each task's cache status (all new when there is no database)."""
    p = _plan(_load(study_file, max_tasks), precision)
    return p, _statuses(ctx, p)


def _statuses(ctx: click.Context, p: Any) -> dict[str, Any]:
    """Each task's cache status: read straight from a plain SQLite file when it can be (a
    cached rerun then never imports SQLAlchemy), else through the database's engine."""
    from runner.plan import TaskStatus, cache_status, quick_cache_status

    quick = quick_cache_status(p, ctx.obj["db"], _store(ctx))
    if quick is not None:
        return quick
    engine = _engine(ctx, missing_ok=True)
    if engine is None:
        return {t.key: TaskStatus(False, "new") for t in p.tasks}
    return cache_status(p, engine, _store(ctx))


@main.command()
@global_options
@click.argument("study_file", type=click.Path(dir_okay=False))
@_precision_option
@click.pass_context
def why(ctx: click.Context, study_file: str, precision: str) -> None:
    """For each task that is not cached, what differs from the nearest cached task."""
    from runner.db import done_tasks_like
    from runner.plan import explain

    p, statuses = _plan_and_status(ctx, study_file, precision=precision)
    engine = _engine(ctx, missing_ok=True)
    pending = [t for t in p.tasks if not statuses[t.key].cached]
    if not pending:
        click.echo("every task is cached")
        return
    for t in pending:
        click.echo(f"{t.kind} / {t.model or '-'} / {t.short}: {statuses[t.key].reason}")
        cands = done_tasks_like(engine, t.kind, t.model) if engine is not None else []
        click.echo("  " + explain(t, cands).replace("\n", "\n  "))


@main.command()
@global_options
@click.argument("study_file", type=click.Path())
@click.option("--device", default="auto", show_default=True, help="cpu, cuda, cuda:1, auto.")
@click.option("--batch-size", default=64, show_default=True, type=_BatchSize(),
              help="images per batch, or auto: on a GPU as many as half its free memory "
                   "holds by a probe of each model (at most 512), on a CPU 64.")
@click.option("--workers", default=None, type=click.IntRange(0),
              help="data-loading (decode) processes. [default: 0 on a CPU; on a GPU one per "
                   "core but one, at most 8]")
@click.option("--prefetch", default=2, show_default=True, type=click.IntRange(1),
              help="batches each decode worker keeps ready ahead of the model.")
@_precision_option
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
@_max_tasks_option
@click.pass_context
def run(ctx: click.Context, study_file: str, device: str, batch_size: int | str,
        workers: int | None, prefetch: int, precision: str, executor: str, address: str | None,
        actors: int | None, gpus_per_actor: float | None, with_report: bool,
        max_tasks: int | None) -> None:
    """Run every task of a study that is not cached."""
    from runner.plan import cache_status

    p, todo = _plan_to_run(ctx, study_file, max_tasks, precision, with_report)
    store = _run_store(ctx)  # a folder that is not a store: refused before the slow checks
    _check(p, todo, device, here=executor == "local")  # Ray workers hold their own devices
    from runner.execute.display import make_display
    from runner.execute.local import RunOptions, execute
    from runner.execute.signals import Interrupted

    _check_lease()
    engine = _engine(ctx, write=True, create=True)
    _claim_store(store, ctx)
    options = RunOptions(device=device, batch_size=batch_size, workers=workers,
                         prefetch=prefetch, command=" ".join(["vitstudy"] + sys.argv[1:]))
    try:
        if executor == "ray":
            from runner.execute.ray import RayExecutorError, execute_ray

            try:
                summary = execute_ray(p, engine, store, options, make_display(),
                                      address=address, actors=actors,
                                      gpus_per_actor=gpus_per_actor)
            except RayExecutorError as e:
                raise UsageProblem(str(e)) from None
        else:
            summary = execute(p, engine, store, options, make_display())
    except Interrupted as e:  # SIGINT (Ctrl-C) or SIGTERM: exit 130 or 143
        _say_interrupted(e)
        ctx.exit(e.exit_code)
    failed_there = f" ({len(summary.failed_elsewhere)} failed there)" \
        if summary.failed_elsewhere else ""
    click.echo(f"{len(summary.done)} done, {len(summary.failed)} failed, "
               f"{len(summary.elsewhere)} taken by another runner{failed_there}, "
               f"{summary.cached} cached")
    if with_report:
        _write_report(ctx, p, cache_status)
    ctx.exit(summary.exit_code)


def _plan_to_run(ctx: click.Context, study_file: str, max_tasks: int | None, precision: str,
                 with_report: bool) -> tuple[Any, list[Any]]:
    """The study's plan and its tasks that are not cached. The common rerun, all cached, ends
    here (exit 0, after the report if asked for) before the executor is imported. The
    collector is held from loading the study on, in one pause: the end of a pause sends it
    through every object made during the pause (20 ms at 10,000 tasks), and in a rerun
    without a report the pause lasts until the exit, where ``_spare_shutdown_collections``
    has left it nothing to collect."""
    from runner.plan import cache_status
    from runner.spec import gc_paused

    with gc_paused():
        p, statuses = _plan_and_status(ctx, study_file, max_tasks, precision)
        todo = [t for t in p.tasks if not statuses[t.key].cached]
        if not todo:
            click.echo(f"nothing to run: all {len(p.tasks)} tasks cached")
            if not with_report:
                _spare_shutdown_collections()
                ctx.exit(0)
    if not todo:  # the report is written with the collector back on
        _write_report(ctx, p, cache_status)
        _spare_shutdown_collections()
        ctx.exit(0)
    return p, todo


def _check_lease() -> None:
    """Refuse an invalid ``VITSTUDY_LEASE_S`` before anything is written (``SettingError``)."""
    from runner.db import lease_seconds

    lease_seconds()


def _say_interrupted(stopped: Any) -> None:
    """One line on stderr: what the stopped run did, and that a rerun finishes it."""
    summary = stopped.summary
    did = "" if summary is None else (
        f": {len(summary.done)} done, {len(summary.failed)} failed, {summary.released} "
        "in flight marked interrupted")
    click.echo(f"interrupted by {stopped.signal_name}{did}; run again to finish", err=True)


def _run_store(ctx: click.Context) -> Any:
    """The store a run writes to, refused (before anything is written) when the folder holds
    files vitstudy did not write (``StoreError``)."""
    store = _store(ctx)
    store.claim_for(None)
    return store


def _claim_store(store: Any, ctx: click.Context) -> None:
    """Write (or extend) the store's marker with this run's database, so gc can trust it."""
    from runner.db import database_url

    store.claim_for(_database_label(database_url(ctx.obj["db"])))


def _check(p: Any, tasks: list[Any], device: str | None = None, *, here: bool = True) -> None:
    """Every check run makes before writing anything: the device (when given; with ``here``,
    that this machine has it), then models, weights, sites and datasets of ``tasks``."""
    from runner.errors import DeviceError
    from runner.execute.provenance import check_device
    from runner.plan import check_tasks

    if device is not None:
        try:
            check_device(device, here=here)
        except DeviceError as e:
            raise UsageProblem(f"--device: {e}") from None
    check_tasks(p, tasks)


@main.command()
@global_options
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--out", default=None, help="folder (default reports/<study name>).")
@_precision_option
@click.pass_context
def report(ctx: click.Context, study_file: str, out: str | None, precision: str) -> None:
    """Build the study's tables and figures from the database."""
    from runner.plan import cache_status

    loaded = _load(study_file)
    p = _plan(loaded, precision)
    _write_report(ctx, p, cache_status, out)


def _write_report(ctx: click.Context, p: Any, cache_status: Any, out: str | None = None) -> None:
    from runner.present.atlas_links import DEFAULT_ROOT
    from runner.report import build_report

    engine = _engine(ctx)
    out_dir = Path(out or Path("reports") / p.study.name)
    index = build_report(p.study.name, [t.key for t in p.tasks], engine, _store(ctx).root,
                         out_dir, model_names=_library_names(p),
                         atlas_dir=Path(DEFAULT_ROOT) / p.study.name)
    click.echo(f"report: {Path(index).resolve()}")


def _library_names(p: Any) -> dict[str, str | None]:
    """Each model alias of the plan's study -> its library name (families, paper matches)."""
    from runner.present.paper import library_name

    return {alias: library_name(spec) for alias, spec in p.study.study.models.items()}


@main.command()
@global_options
@click.argument("study_file", type=click.Path(dir_okay=False))
@click.option("--out", default=None,
              help="folder (default atlas/<study name>); only a folder the atlas made (or a new "
                   "or empty one) is written to.")
@click.option("--per-page", default=256, show_default=True, type=click.IntRange(1),
              help="features per page of a layer's grid.")
@_precision_option
@click.pass_context
def atlas(ctx: click.Context, study_file: str, out: str | None, per_page: int,
          precision: str) -> None:
    """Build the study's feature atlas from the database: a static site (models, layers, a
    grid of features, a page per feature) that opens from file:// with no server. A rebuild
    writes only what changed."""
    from runner.atlas import build_atlas
    from runner.atlas.images import ImageSource
    from runner.present.atlas_links import DEFAULT_ROOT

    loaded = _load(study_file)
    p = _plan(loaded, precision)
    engine = _engine(ctx)
    out_dir = Path(out or Path(DEFAULT_ROOT) / p.study.name)
    result = build_atlas(p.study.name, [t.key for t in p.tasks], engine, _store(ctx).root,
                         out_dir, images=ImageSource(loaded), per_page=per_page,
                         model_names=_library_names(p), progress=_Progress("atlas: writing files"))
    done = result.sync
    click.echo(f"atlas: {result.features} features; {done.written} files written, "
               f"{done.unchanged} unchanged, {done.removed} removed")
    click.echo(f"atlas: {result.index.resolve()}")
    _spare_shutdown_collections()


class _Progress:
    """``done/total`` on stderr for a long loop (``least`` items or more): on a terminal one
    line rewritten at most once a second, elsewhere a line every ten seconds; always the last."""

    def __init__(self, what: str, least: int = 500) -> None:
        self.what, self.least, self._last = what, least, 0.0
        self.terminal = sys.stderr.isatty()

    def __call__(self, done: int, total: int) -> None:
        import time

        now = time.monotonic()
        if total < self.least or (
                done < total and now - self._last < (1.0 if self.terminal else 10.0)):
            return
        self._last = now
        if self.terminal:
            click.echo(f"\r{self.what} {done}/{total}", err=True, nl=done == total)
        else:
            click.echo(f"{self.what} {done}/{total}", err=True)


@main.command()
@global_options
@click.argument("study_file", required=False, type=click.Path(dir_okay=False))
@click.option("--kind", default=None)
@click.option("--name", "metric", default=None, help="metric name (top1, top5_norm, ...)")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--wide", is_flag=True, help="every column of the `results` view (study, "
              "params JSON, position, the full task key), not only those that tell metrics "
              "apart.")
@click.pass_context
def results(ctx: click.Context, study_file: str | None, kind: str | None, metric: str | None,
            fmt: str, wide: bool) -> None:
    """Print metrics (the `results` view) as a table, CSV or JSON.

    By default only the columns that tell metrics apart: key (short in a table, full in CSV
    and JSON), kind, model, dataset, name, variant, layer, feature, x, value. --wide: all.
    """
    import runner.results as R

    study = _load(study_file).name if study_file else None
    df = R.results(_engine(ctx), study=study, kind=kind, name=metric)
    _print_frame(df if wide else _compact_results(df, short_keys=fmt == "table"), fmt)


#: The columns ``vitstudy results`` shows without ``--wide``.
COMPACT_RESULT_COLUMNS = ("key", "kind", "model", "dataset", "name", "variant", "layer",
                          "feature", "x", "value")
#: Characters of a task key shown in tables (as `plan` shows them).
SHORT_KEY = 10


def _compact_results(df: Any, *, short_keys: bool) -> Any:
    """The ``results`` frame cut to ``COMPACT_RESULT_COLUMNS`` (``task_key`` named ``key``)."""
    df = df.rename(columns={"task_key": "key"})
    if short_keys:
        df["key"] = df["key"].str[:SHORT_KEY]
    return df[list(COMPACT_RESULT_COLUMNS)]


@main.command()
@global_options
@click.argument("query")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table")
@click.option("--write", "allow_write", is_flag=True,
              help="allow a statement that changes the database (INSERT, UPDATE, DELETE, "
                   "CREATE, DROP...) and commit it; back the database up first.")
@click.pass_context
def sql(ctx: click.Context, query: str, fmt: str, allow_write: bool) -> None:
    """Run one SQL statement against the result database; read-only unless --write.

    Without --write the database is opened read-only: a statement that would change it
    (INSERT, UPDATE, DELETE, DROP, ATTACH, a PRAGMA that sets something) is refused with
    exit 2 and nothing changes. Times (columns named *_at) show as ISO-8601 UTC in a table.
    """
    import pandas as pd
    from sqlalchemy.exc import SQLAlchemyError

    from runner.db import query as run_query

    engine = _engine(ctx, write=allow_write)
    try:
        cols, rows = run_query(engine, query, commit=allow_write)
    except SQLAlchemyError as e:
        detail = _driver_message(e)
        refused = ("not authorized", "read-only", "readonly", "multiple commands")
        if not allow_write and any(r in detail.lower() for r in refused):
            detail += (". `vitstudy sql` opens the database read-only: add --write to change "
                       "it (back it up first)")
        raise UsageProblem(f"SQL error: {detail}") from None
    _print_frame(pd.DataFrame(rows, columns=cols), fmt)


@main.command()
@global_options
@click.option("--dry-run", is_flag=True, help="only say what would be removed.")
@click.option("--yes", "-y", is_flag=True, help="remove without asking (for scripts).")
@click.pass_context
def gc(ctx: click.Context, dry_run: bool, yes: bool) -> None:
    """Remove artifact files that no database row refers to.

    Only in a store folder that `vitstudy run` made for this database (its .vitstudy-store
    marker names it), never creating a database, never a file a live run may still record.
    On a terminal it asks first; elsewhere it needs --yes.
    """
    from runner.db import database_url, gc_lock

    reader = _engine(ctx)
    store = _store(ctx)
    store.check_owner(_database_label(database_url(ctx.obj["db"])))
    preview = store.gc(lambda: gc_lock(reader, exclusive=False), dry_run=True)
    size = f"{preview.bytes_freed / 1e6:.1f} MB"
    if dry_run or not preview.removed:
        verb = "would remove" if dry_run else "nothing to remove:"
        click.echo(f"{verb} {preview.removed} file(s), {size}; kept {preview.kept}")
        return
    if not yes and not _on_a_terminal():
        raise UsageProblem(f"gc would remove {preview.removed} file(s) ({size}) from "
                           f"{store.root}; stdin is not a terminal, so pass --yes to remove "
                           "them (--dry-run only counts them)")
    if not yes:
        click.confirm(f"remove {preview.removed} file(s) ({size}) from {store.root}?",
                      abort=True)
    rep = store.gc(lambda: gc_lock(_engine(ctx, write=True)))
    click.echo(f"removed {rep.removed} file(s), {rep.bytes_freed / 1e6:.1f} MB; kept {rep.kept}")


@main.command()
@global_options
@click.option("--mark-stale", is_flag=True,
              help="mark each task with a missing or corrupted artifact stale (and the tasks "
                   "downstream of it), so that the next run redoes them.")
@click.pass_context
def verify(ctx: click.Context, mark_stale: bool) -> None:
    """Check every artifact of every done task against its recorded size and sha256.

    Reads every file of the store once. Read-only unless --mark-stale. Prints each task with
    a missing or corrupted artifact; exit 0 when all are intact, 1 when some are not.
    """
    from runner.execute.integrity import check_store, mark_damaged

    found = check_store(_engine(ctx), _store(ctx))
    for key, damage in found.damaged.items():
        art = damage[0][0]
        problems = "; ".join(f"{problem} {a.role} ({a.path})" for a, problem in damage)
        click.echo(f"{art.kind} / {art.model or '-'} / {key[:10]}: {problems}")
    n_files = sum(len(d) for d in found.damaged.values())
    line = (f"checked {found.checked} file(s) of {found.tasks} done task(s): "
            f"{n_files} damaged in {len(found.damaged)} task(s)")
    if mark_stale and found.damaged:
        marked = mark_damaged(_engine(ctx, write=True), found)
        line += f"; marked {len(marked)} task(s) stale (they rerun on the next run)"
    elif found.damaged:
        line += "; `vitstudy verify --mark-stale` makes the next run redo them"
    click.echo(line)
    ctx.exit(1 if found.damaged else 0)


def _on_a_terminal() -> bool:
    """Whether someone can answer a question (stdin is a terminal)."""
    return sys.stdin.isatty()


def _database_label(url: str) -> str:
    """How the store's marker names the database at ``url``."""
    from sqlalchemy.exc import ArgumentError

    from runner.db import database_label

    try:
        return database_label(url)
    except ArgumentError as e:
        raise UsageProblem(f"--db {url!r} is not a database URL: {e}") from None


@main.group("db")
def db_group() -> None:
    """The result database: schema version and upgrades."""


@db_group.command("upgrade")
@global_options
@click.pass_context
def db_upgrade(ctx: click.Context) -> None:
    """Upgrade the database's schema to this vitstudy's version (back the database up first)."""
    from runner.db import connect, database_url, hide_password
    from runner.migrations import upgrade

    url = database_url(ctx.obj["db"])
    shown = hide_password(url)
    try:
        before, after = upgrade(connect(url, create=False))
    except (SchemaError, DatabaseUnusable) as e:  # a newer schema, no driver, a bad URL
        raise UsageProblem(f"{shown}: {e}") from None
    if before == after:
        click.echo(f"{shown}: schema version {after}, up to date")
    elif before is None:
        click.echo(f"{shown}: created, schema version {after}")
    else:
        click.echo(f"{shown}: upgraded schema version {before} -> {after}")


@main.command()
@global_options
@click.argument("model_spec")
@click.option("--study", "study_file", default=None, type=click.Path(dir_okay=False),
              help="read MODEL_SPEC as a model name in this study file.")
def sites(model_spec: str, study_file: str | None) -> None:
    """List a model's feature sites with shapes and feature counts.

    MODEL_SPEC is a model name of a study (with --study), a timm name
    (`vit_base_patch16_224`), or `source:name[@tag]` (`open_clip:ViT-B-32-quickgelu@openai`,
    `torchvision:resnet50`). No weights are downloaded: sites come from the architecture.
    """
    from runner.models import format_sites, inspect_model
    from runner.models.refs import parse_model_ref

    base_dir = None
    if study_file:
        loaded = _load(study_file)
        if model_spec not in loaded.study.models:
            raise UsageProblem(f"{study_file}: no model named {model_spec!r}; known: "
                               f"{', '.join(sorted(loaded.study.models))}")
        spec, base_dir = loaded.study.models[model_spec], loaded.base_dir
    if not study_file:
        spec = parse_model_ref(model_spec)
    click.echo(format_sites(inspect_model(spec, base_dir=base_dir)))  # ModelError: exit 2


def _print_frame(df: Any, fmt: str) -> None:
    if fmt == "csv":
        click.echo(df.to_csv(index=False), nl=False)
    elif fmt == "json":
        click.echo(df.to_json(orient="records", indent=1))
    else:
        df = _readable_times(df)
        df = df.astype(object).where(df.notna(), None)  # pandas' NA and NaT print as "-"
        _print_table(list(df.columns), [tuple(r) for r in df.itertuples(index=False)])


def _readable_times(df: Any) -> Any:
    """Numeric columns named ``*_at`` (seconds since the epoch, as stored) as ISO-8601 UTC
    text, for people; CSV and JSON keep the stored numbers, for programs."""
    import pandas as pd

    out = df.copy()
    for name in df.columns:
        if str(name).endswith("_at") and pd.api.types.is_numeric_dtype(df[name]):
            stamps = pd.to_datetime(df[name], unit="s", utc=True)
            out[name] = stamps.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return out


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
