"""The ``scrapl`` command line.

Subcommands::

    scrapl demo    [--out DIR] [--config FILE] [options]   sound matching: SCRAPL vs MSS
    scrapl bench   [--config FILE | options] [--json FILE]  time and memory of one step
    scrapl warmup  CONFIG [--out DIR] [--shard I/N] [--paths A:B]   theta-IS warmup
    scrapl paths   CONFIG [--probs FILE] [--json]           the paths and their labels
    scrapl plugins [--json]                                 registered plugins
    scrapl schema  [--kind KIND]                            JSON schema of configs

Config files are YAML (or JSON) scrapl configs (what :func:`scrapl.build` reads:
``transform``, ``sampler``, ``optimizer``, ``loss``, ``seed``) with an optional extra
``demo:`` section for the demo's own settings
(:class:`scrapl.demo.settings.DemoSettings`); the command line splits it off before
calling ``scrapl.build``.

Errors in arguments or config files print one line ``scrapl: error: ...`` on
stderr and exit with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any, Callable, Mapping, NoReturn, Sequence

__all__ = ["main", "build_parser", "CliError"]

PROG = "scrapl"
DEFAULT_SR = 8192.0  # sample rate (Hz) of `scrapl paths` when neither --sr nor the config gives one


class CliError(Exception):
    """A user error: printed as one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors are one line (no usage dump) and exit 2."""

    def error(self, message: str) -> NoReturn:  # noqa: D401 - argparse API
        raise CliError(f"{message} (see '{self.prog} --help')")


# ----------------------------------------------------------------------------- helpers
def _one_line(exc: BaseException) -> str:
    """A single-line description of ``exc`` (pydantic errors condensed)."""
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover
        ValidationError = ()  # type: ignore[assignment]
    if isinstance(exc, ValidationError):  # type: ignore[arg-type]
        parts = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ())) or "(config)"
            parts.append(f"{loc}: {err.get('msg', '')}")
        text = "invalid config: " + "; ".join(parts)
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _bounded(cast: Callable[[str], Any], low: float, *, strict: bool, what: str) -> Callable[[str], Any]:
    """An argparse converter: ``cast(text)``, finite, ``> low`` (``strict``) or ``>= low``."""

    def convert(text: str) -> Any:
        try:
            value = cast(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < low or (strict and value == low):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return convert


_positive_int = _bounded(int, 1, strict=False, what="a positive integer")
_nonneg_int = _bounded(int, 0, strict=False, what="a non-negative integer")
_positive_float = _bounded(float, 0.0, strict=True, what="a positive finite number")


def _shard(text: str) -> tuple[int, int]:
    """``I/N`` with ``0 <= I < N``."""
    try:
        i_str, n_str = text.split("/")
        i, n = int(i_str), int(n_str)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected I/N (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise argparse.ArgumentTypeError(f"expected I/N with 0 <= I < N, got {text!r}")
    return i, n


def _path_range(text: str) -> tuple[int | None, int | None]:
    """``A:B`` (either side may be empty) -> (start, stop)."""
    if ":" not in text:
        raise argparse.ArgumentTypeError(f"expected A:B (e.g. 0:40), got {text!r}")
    a, b = text.split(":", 1)
    try:
        start = int(a) if a.strip() else None
        stop = int(b) if b.strip() else None
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers in A:B, got {text!r}") from None
    if (start is not None and start < 0) or (stop is not None and stop < 0):
        raise argparse.ArgumentTypeError(f"path indices must be >= 0, got {text!r}")
    if start is not None and stop is not None and stop <= start:
        raise argparse.ArgumentTypeError(f"expected A < B in A:B, got {text!r}")
    return start, stop


def _methods(text: str) -> tuple[str, ...]:
    allowed = ("scrapl", "scrapl_uniform", "full_jtfs", "mss", "supervised")
    names = tuple(s.strip() for s in text.split(",") if s.strip())
    bad = [n for n in names if n not in allowed]
    if not names or bad:
        raise argparse.ArgumentTypeError(f"methods must be a comma-separated list of {', '.join(allowed)}; got {text!r}")
    return names


def _read_mapping(path: str) -> dict[str, Any]:
    """The one config-file reader of the commands (YAML/JSON mapping; one-line errors)."""
    from scrapl.builder import read_mapping_file

    try:
        return read_mapping_file(path)
    except (OSError, ValueError, TypeError) as exc:
        raise CliError(_one_line(exc)) from None


def _read_config(path: str, sections: tuple[str, ...] = ("demo",)) -> tuple[dict[str, Any], dict[str, Any]]:
    """A config file split into ``(scrapl config, {section: mapping})``: the command's
    own ``sections`` (``demo:``; ``task:`` and ``warmup:`` for ``scrapl warmup``) are
    taken out, anything else stays for the scrapl config's validation."""
    data = _read_mapping(path)
    extra = {k: data.pop(k) or {} for k in sections if k in data}  # an empty section (None) is {}
    for key, value in extra.items():
        if not isinstance(value, Mapping):
            raise CliError(f"{path}: the '{key}' section must be a mapping, got {type(value).__name__}")
    return data, extra


def _validate_settings(demo: Mapping[str, Any], overrides: Mapping[str, Any]) -> Any:
    """:class:`DemoSettings` from a ``demo:`` section plus command-line overrides
    (dotted keys such as ``synth.max_shift``)."""
    from pydantic import ValidationError

    from scrapl.demo.settings import DemoSettings

    data: dict[str, Any] = json.loads(json.dumps(dict(demo)))
    for key, value in overrides.items():
        if value is None:
            continue
        node = data
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    try:
        return DemoSettings.model_validate(data)
    except ValidationError as exc:
        raise CliError("demo settings: " + _one_line(exc)) from None


def _check_scrapl_config(cfg: Mapping[str, Any]) -> Any:
    """Validate a scrapl config (without building anything heavy)."""
    from pydantic import ValidationError

    from scrapl.builder import load_config

    try:
        return load_config(dict(cfg))
    except ValidationError as exc:
        raise CliError(_one_line(exc)) from None
    except (ValueError, TypeError, LookupError) as exc:
        raise CliError(_one_line(exc)) from None


def _print_table(rows: Sequence[Sequence[Any]], header: Sequence[str], file: Any = None) -> None:
    out = file or sys.stdout
    cells = [[str(h) for h in header]] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for n, r in enumerate(cells):
        print("  ".join(c.rjust(w) if n and _numeric(c) else c.ljust(w) for c, w in zip(r, widths)).rstrip(), file=out)
        if n == 0:
            print("  ".join("-" * w for w in widths), file=out)


def _numeric(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------- demo
def _cmd_demo(args: argparse.Namespace) -> int:
    from scrapl.demo.train import format_summary, run_demo

    from scrapl.demo.settings import default_scrapl_config

    if args.config is None:
        scrapl_cfg, demo = default_scrapl_config(), {}
    else:
        scrapl_cfg, sections = _read_config(args.config)
        demo = sections.get("demo", {})
    if args.settings is not None:
        extra = _read_mapping(args.settings)  # a 'demo:' section or its content
        demo = {**demo, **extra.get("demo", extra)}
    overrides = {
        "steps": args.steps,
        "full_steps": args.full_steps,
        "workers": args.workers,
        "batch_size": args.batch_size,
        "scrapl_lr": args.scrapl_lr,
        "mss_lr": args.mss_lr,
        "seed": args.seed,
        "n_val": args.n_val,
        "val_every": args.val_every,
        "methods": list(args.methods) if args.methods else None,
        "threads": args.threads,
        "full_lr": args.full_lr,
        "warmup.n_iter": args.warmup_iters,
        "warmup.batch_size": args.warmup_batch_size,
        "synth.max_shift": args.max_shift,
    }
    settings = _validate_settings(demo, overrides)
    if args.shape is not None:
        scrapl_cfg = json.loads(json.dumps(scrapl_cfg))
        scrapl_cfg.setdefault("transform", {})["shape"] = args.shape
    _check_scrapl_config(scrapl_cfg)
    from pydantic import ValidationError

    try:
        result = run_demo(scrapl_cfg, settings, out_dir=Path(args.out), progress=not args.no_progress,
                          log=_log(args.quiet))
    except (ValidationError, ValueError) as exc:
        raise CliError(_one_line(exc)) from None
    print(format_summary(result))
    return 0


def _log(quiet: bool) -> Callable[[str], None]:
    def log(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    return log


# ----------------------------------------------------------------------------- ablate
def _cmd_ablate(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from scrapl.ablation import ablate, load_spec

    if args.executor != "ray" and args.address is not None:
        raise CliError("--address needs --executor ray")
    if args.executor == "ray" and args.workers is not None:
        raise CliError("--workers is for the local executor (Ray places one task per run)")
    try:
        spec = load_spec(args.spec)
    except ValidationError as exc:
        raise CliError(f"spec {args.spec!r}: " + _one_line(exc).replace("invalid config: ", "")) from None
    except (OSError, ValueError, TypeError) as exc:
        raise CliError(_one_line(exc)) from None
    try:
        result = ablate(
            spec, args.out, executor=args.executor, workers=args.workers or 0, address=args.address,
            gpus=args.gpus, progress=not args.no_progress, plots=not args.no_plots, log=_log(args.quiet),
        )
    except ValidationError as exc:
        raise CliError(_one_line(exc)) from None
    except ValueError as exc:
        raise CliError(_one_line(exc)) from None
    print(result.table())
    print(f"{result.ran} runs computed, {result.skipped} found finished; report in {result.out}")
    return 0


# ----------------------------------------------------------------------------- bench
def _cmd_bench(args: argparse.Namespace) -> int:
    from scrapl.bench import default_bench_config, format_bench, run_bench

    scrapl_cfg = _read_config(args.config)[0] if args.config is not None else default_bench_config()
    t = dict(scrapl_cfg.get("transform", {}))
    for key, value in (
        ("shape", args.shape),
        ("J", args.J),
        ("Q1", args.Q1),
        ("Q2", args.Q2),
        ("J_fr", args.J_fr),
        ("Q_fr", args.Q_fr),
        ("T", args.T),
        ("F", args.F),
    ):
        if value is not None:
            t[key] = value
    scrapl_cfg = {**scrapl_cfg, "transform": t}
    _check_scrapl_config(scrapl_cfg)
    methods = tuple(args.methods.split(",")) if args.methods else ("scrapl", "jtfs", "mss")
    bad = [m for m in methods if m not in ("scrapl", "jtfs", "mss")]
    if bad:
        raise CliError(f"--methods must be a comma-separated list of scrapl, jtfs, mss; got {args.methods!r}")
    result = run_bench(
        scrapl_cfg,
        batch_size=args.batch_size,
        repeats=args.repeats,
        full_repeats=args.full_repeats,
        methods=methods,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(format_bench(result))
    if args.json is not None:
        try:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {args.json!r}: {exc}") from None
    return 0


# ----------------------------------------------------------------------------- warmup
def _cmd_warmup(args: argparse.Namespace) -> int:
    from pydantic import ValidationError

    from scrapl.ablation.warmup import WarmupJob, run_warmup_job

    # A scrapl config plus the job's sections: ``task:`` and ``warmup:``, or a demo
    # config's ``demo:`` section (the demo's task, warmup and seed).
    data, sections = _read_config(args.config, ("demo", "task", "warmup"))
    demo = sections.pop("demo", None)
    job: dict[str, Any] = sections
    if demo is not None:
        if job:
            raise CliError(f"{args.config}: give a 'demo:' section or 'task:'/'warmup:' sections, not both")
        job = _validate_settings(demo, {}).warmup_job()
    job = json.loads(json.dumps(job))
    for key, value in (("n_iter", args.n_iter), ("batch_size", args.batch_size), ("n_batches", args.n_batches)):
        if value is not None:
            job.setdefault("warmup", {})[key] = value
    if args.seed is not None:
        job["seed"] = args.seed
    if args.task is not None:
        job.setdefault("task", {})["name"] = args.task
    try:
        job_model = WarmupJob.model_validate(job)
    except ValidationError as exc:
        raise CliError("warmup settings: " + _one_line(exc)) from None
    summary = run_warmup_job(
        data,
        job_model,
        out_dir=Path(args.out),
        shard=args.shard,
        path_range=args.paths,
        progress=not args.no_progress,
        log=_log(args.quiet),
        overwrite=args.overwrite,
    )
    print(json.dumps(summary, indent=2))
    return 0


# ----------------------------------------------------------------------------- paths
def _cmd_paths(args: argparse.Namespace) -> int:
    import scrapl
    from scrapl.samplers.files import read_probs

    # Of a demo config's ``demo:`` section only the sample rate is read (--sr's default).
    data, sections = _read_config(args.config)
    synth = sections.get("demo", {}).get("synth")
    file_sr = synth.get("sr") if isinstance(synth, Mapping) else None
    config = _check_scrapl_config(data)  # validated once; build takes the config object
    try:
        built = scrapl.build(config)
    except (ValueError, TypeError, LookupError) as exc:
        raise CliError(_one_line(exc)) from None
    probs = None
    if args.probs is not None:
        try:
            probs = read_probs(args.probs, built.transform.n_paths)
        except (OSError, ValueError, RuntimeError) as exc:
            raise CliError(_one_line(exc)) from None
    sr = args.sr if args.sr is not None else (float(file_sr) if isinstance(file_sr, (int, float)) else DEFAULT_SR)
    rows = built.path_table(sr=sr, probs=probs)
    if args.json:
        print(json.dumps({"n_paths": len(rows), "sample_rate": sr, "paths": rows}, indent=2))
        return 0
    header = ["index", "key", "label", "rate_hz", "scale_cyc_oct", "spin", "prob", "prob/unif"]
    table = []
    n = len(rows)
    for r in rows:
        table.append(
            [
                r["index"],
                ",".join(map(str, r["key"])),
                r["label"],
                "-" if r["temporal_rate_hz"] is None else f"{r['temporal_rate_hz']:.4g}",
                "-" if r["freq_scale"] is None else f"{r['freq_scale']:.4g}",
                "-" if r["spin"] is None else f"{r['spin']:+d}",
                f"{r['prob']:.5f}",
                f"{r['prob'] * n:.3f}",
            ]
        )
    _print_table(table, header)
    print(f"{n} paths; temporal rates at sample rate {sr:g} Hz", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- plugins
def _cmd_plugins(args: argparse.Namespace) -> int:
    from scrapl.registry import Registry, get_registry

    reg = Registry(autoload=False) if args.no_autoload else get_registry()
    entries = reg.list()
    if args.json:
        rows = [
            {
                "kind": e.kind,
                "name": e.name,
                "status": e.status,
                "source": e.source,
                "description": e.spec.description if (e.spec is not None and e.ok) else None,
                "error": e.detail if not e.ok else None,
            }
            for e in entries
        ]
        print(json.dumps(rows, indent=2))
        return 0
    rows = [[e.kind or "-", e.name or "-", e.status, e.source, e.detail] for e in entries]
    _print_table(rows, ["kind", "name", "status", "source", "description / error"])
    broken = [e for e in entries if not e.ok]
    if broken:
        print(f"{len(broken)} plugin entr{'y' if len(broken) == 1 else 'ies'} unusable (see above)", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- schema
def _cmd_schema(args: argparse.Namespace) -> int:
    from scrapl.builder import config_json_schema
    from scrapl.registry import get_registry

    reg = get_registry()
    if args.kind is None:
        schema = config_json_schema(reg)
        if args.demo:
            from scrapl.demo.settings import DemoSettings

            schema.setdefault("properties", {})["demo"] = DemoSettings.model_json_schema()
    else:
        kind, _, name = args.kind.partition(":")
        from scrapl.interfaces import PLUGIN_KINDS

        if kind not in PLUGIN_KINDS:
            raise CliError(f"--kind must be one of {', '.join(PLUGIN_KINDS)} (optionally KIND:NAME), got {args.kind!r}")
        try:
            specs = [reg.get(kind, name)] if name else reg.specs(kind)
        except LookupError as exc:
            raise CliError(_one_line(exc)) from None
        schema = {spec.name: spec.config_cls.model_json_schema() for spec in specs}
    print(json.dumps(schema, indent=2))
    return 0


# ----------------------------------------------------------------------------- parser
def _finish(sub_parser: argparse.ArgumentParser, func: Callable[[argparse.Namespace], int], quiet: bool = True) -> None:
    """The flags every long-running command shares (``--no-progress``, ``--quiet``)
    and the function it runs."""
    sub_parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    if quiet:
        sub_parser.add_argument("--quiet", action="store_true", help="no log lines on stderr")
    sub_parser.set_defaults(func=func)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``scrapl`` command."""
    from scrapl import __version__

    p = _Parser(
        prog=PROG,
        description="SCRAPL: scattering transforms with random paths as PyTorch losses.",
        epilog="Run 'scrapl COMMAND --help' for the options of a command.",
    )
    p.add_argument("--version", action="version", version=f"scrapl {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    # demo
    d = sub.add_parser(
        "demo",
        help="sound matching with the chirplet synth: SCRAPL vs full JTFS, MSS, supervised",
        description=(
            "Train an encoder to recover the AM and FM rates of chirplets with random delays, "
            "without labels, with SCRAPL (P-Adam + P-SAGA, theta-IS), the full JTFS distance and the "
            "multi-resolution STFT loss (MSS), plus a supervised reference, under the same step budget "
            "(a one-seed preset of 'scrapl ablate'); report held-out parameter errors against "
            "predicting the middle, write runs.csv, summary.json/.md and plots. Resumable."
        ),
    )
    d.add_argument("--out", default="scrapl_demo", help="output folder (default: %(default)s)")
    d.add_argument("--config", help="scrapl config file (YAML/JSON), optionally with a 'demo:' section")
    d.add_argument("--settings", help="YAML file with demo settings (a 'demo:' section or its content)")
    d.add_argument("--steps", type=_positive_int, help="optimizer steps of every arm but full_jtfs (default 2000)")
    d.add_argument("--full-steps", type=_positive_int, help="steps of the full_jtfs arm, at most --steps (default 300)")
    d.add_argument("--workers", type=_nonneg_int, help="worker processes for the arms (0: this process; default 2)")
    d.add_argument("--batch-size", type=_positive_int, help="training batch size")
    d.add_argument("--scrapl-lr", type=_positive_float, help="learning rate of the SCRAPL run")
    d.add_argument("--mss-lr", type=_positive_float, help="Adam learning rate of the MSS run")
    d.add_argument("--seed", type=_nonneg_int, help="seed of weights and training data")
    d.add_argument("--n-val", type=_positive_int, help="held-out examples")
    d.add_argument("--val-every", type=_positive_int, help="validate every N steps")
    d.add_argument("--full-lr", type=_positive_float, help="Adam learning rate of the full-JTFS run")
    d.add_argument("--methods", type=_methods,
                   help="comma-separated arms: scrapl, scrapl_uniform, full_jtfs, mss, supervised")
    d.add_argument("--warmup-iters", type=_positive_int, help="power iterations of the theta-IS warmup")
    d.add_argument("--warmup-batch-size", type=_positive_int, help="signals in the theta-IS warmup batch")
    d.add_argument("--max-shift", type=_nonneg_int, help="largest random delay in samples")
    d.add_argument("--shape", type=_positive_int, help="signal length (overrides transform.shape)")
    d.add_argument("--threads", type=_positive_int, help="torch CPU threads (default: torch's choice)")
    _finish(d, func=_cmd_demo)

    # ablate
    ab = sub.add_parser(
        "ablate",
        help="ablation sweep: arms x seeds from a spec, resumable, with CIs and plots",
        description=(
            "Run every (arm, seed) of an ablation spec (YAML/JSON) not yet finished in --out, "
            "then write runs.csv, summary.json, summary.md and plots and print the table. "
            "Rerunning the same command skips finished runs; a folder made by another spec is refused."
        ),
    )
    ab.add_argument("spec", help="ablation spec file (YAML/JSON), e.g. configs/ablation_chirplet.yaml")
    ab.add_argument("--out", required=True, help="output folder")
    ab.add_argument("--executor", choices=("local", "ray"), default="local", help="where runs execute (default: %(default)s)")
    ab.add_argument("--workers", type=_nonneg_int, help="local worker processes (0: this process; default 0)")
    ab.add_argument("--address", help="Ray cluster address (default: start a local Ray)")
    ab.add_argument("--gpus", type=float, default=0.0, help="GPUs per Ray task (default: %(default)s)")
    ab.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    _finish(ab, func=_cmd_ablate)

    # bench
    b = sub.add_parser(
        "bench",
        help="time and peak memory of one loss+backward step: SCRAPL, full JTFS, MSS",
        description=(
            "Measure loss + backward time and peak memory of one-path SCRAPL (median over random "
            "paths), the full JTFS distance and auraloss's MultiResolutionSTFTLoss for one "
            "configuration (default: the demo's). SCRAPL's and MSS's timed steps alternate, so that "
            "a shared machine's slow phases hit both alike; compare ratios within one run."
        ),
    )
    b.add_argument("--config", help="scrapl config file (YAML/JSON)")
    for name, typ in (("shape", _positive_int), ("J", _positive_int), ("Q1", _positive_int), ("Q2", _positive_int),
                      ("J-fr", _positive_int), ("Q-fr", _positive_int), ("T", _positive_int), ("F", _positive_int)):
        b.add_argument(f"--{name}", type=typ, dest=name.replace("-", "_"), help=f"override transform.{name.replace('-', '_')}")
    b.add_argument("--batch-size", type=_positive_int, default=4, help="batch size (default: %(default)s)")
    b.add_argument("--repeats", type=_positive_int, default=10, help="timed SCRAPL/MSS steps (default: %(default)s)")
    b.add_argument("--full-repeats", type=_positive_int, default=1, help="timed full-JTFS steps (default: %(default)s)")
    b.add_argument("--methods", help="comma-separated subset of scrapl,jtfs,mss (default: all)")
    b.add_argument("--seed", type=_nonneg_int, default=0, help="seed of inputs and paths (default: %(default)s)")
    b.add_argument("--json", help="also write the results as JSON to this file")
    _finish(b, func=_cmd_bench, quiet=False)

    # warmup
    w = sub.add_parser(
        "warmup",
        help="theta-IS warmup of any config on a registered task (shardable, resumable)",
        description=(
            "Estimate per-path curvatures of a config's transform for a task's model (the config's "
            "'task:' section, as in an ablation spec, default chirplet; its 'warmup:' section holds "
            "n_batches, batch_size, n_iter, seed; a demo config's 'demo:' section also works) and "
            "write theta-IS probabilities. "
            "Shard with --shard I/N or --paths A:B across processes; under torchrun the rank and "
            "world size are used. Finished paths in --out are skipped (resumable) when --out's warmup.json "
            "records the same settings; otherwise the run stops, naming what differs (--overwrite starts again)."
        ),
    )
    w.add_argument("config", help="scrapl config file (YAML/JSON), optionally with 'task:' and 'warmup:' sections")
    w.add_argument("--out", default="scrapl_warmup", help="output folder (default: %(default)s)")
    w.add_argument("--shard", type=_shard, help="process this shard I/N of the paths")
    w.add_argument("--paths", type=_path_range, help="process paths A:B only")
    w.add_argument("--n-iter", type=_positive_int, help="power iterations per path and parameter")
    w.add_argument("--batch-size", type=_positive_int, help="signals per warmup batch")
    w.add_argument("--n-batches", type=_positive_int, help="warmup batches")
    w.add_argument("--task", help="registered task (overrides task.name; default chirplet)")
    w.add_argument("--seed", type=_nonneg_int, help="seed of the model weights (default 0)")
    w.add_argument("--overwrite", action="store_true",
                   help="delete the results in --out first (needed when they were computed with other settings)")
    _finish(w, func=_cmd_warmup)

    # paths
    pa = sub.add_parser(
        "paths",
        help="list the paths of a config with physical labels and probabilities",
        description="List every path: index, key, label, temporal rate (Hz), frequential scale (cycles/octave), spin and sampling probability.",
    )
    pa.add_argument("config", help="scrapl config file (YAML/JSON)")
    pa.add_argument("--probs", help="probabilities to show (.pt file or warmup folder); default: the sampler's")
    pa.add_argument("--sr", type=_positive_float, help="sample rate in Hz for the temporal rates (default: the config's demo.synth.sr, else 8192)")
    pa.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pa.set_defaults(func=_cmd_paths)

    # plugins
    pl = sub.add_parser("plugins", help="list registered plugins (broken ones with their errors)")
    pl.add_argument("--json", action="store_true", help="print JSON instead of a table")
    pl.add_argument("--no-autoload", action="store_true", help="built-in plugins only (skip entry points)")
    pl.set_defaults(func=_cmd_plugins)

    # schema
    sc = sub.add_parser("schema", help="JSON schema of scrapl configs")
    sc.add_argument("--kind", help="only the plugin configs of KIND (transform, sampler, optimizer) or KIND:NAME")
    sc.add_argument("--demo", action="store_true", help="include the demo's 'demo:' section")
    sc.set_defaults(func=_cmd_schema)
    return p


#: Errors of the user's input (arguments, config and data files, folders): exit 2.
_USAGE_ERRORS = (CliError, ValueError, TypeError, LookupError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status: 0 ok, 2 a usage, config or input
    file error, 1 a runtime failure (a full disk, a read-only folder, an internal
    error), 130 interrupted.  Every error is one line on stderr, never a traceback."""
    from scrapl.errors import ScraplError

    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if getattr(args, "func", None) is None:
            parser.print_help(sys.stderr)
            return 2
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. `scrapl paths cfg | head`
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silence the flush at exit
        except OSError:
            pass
        return 0
    except (*_USAGE_ERRORS, ScraplError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except (FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError) as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)  # a wrong path given
        return 2
    except OSError as exc:  # the file system failed: full, read-only, permissions
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except RecursionError:
        print(f"{PROG}: error: input nested too deeply", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence: one line, exit 1
        print(f"{PROG}: error: internal error: {type(exc).__name__}: {_one_line(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
