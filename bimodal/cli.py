"""Command line: ``bimodal demo | reproduce | extract | data synth | data check | bench``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from .errors import BimodalError

log = logging.getLogger("bimodal")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "experiments" / "configs"


def _config_path(name_or_path: str) -> Path:
    p = Path(name_or_path)
    if p.is_file():
        return p
    named = CONFIG_DIR / (p.name if p.suffix == ".toml" else f"{p.name}.toml")
    if named.is_file():
        return named
    known = ", ".join(sorted(c.stem for c in CONFIG_DIR.glob("*.toml")))
    raise BimodalError(f"{name_or_path}: no such config file, nor a config named so in {CONFIG_DIR} ({known})")


def _load(args, name_or_path: str):
    from experiments.config import load_config

    overrides = list(args.set or [])
    if getattr(args, "seeds", None) is not None:
        if args.seeds < 1:
            raise BimodalError(f"--seeds {args.seeds}: runs seeds 0..N-1, so N must be at least 1")
        overrides.append(f"experiment.seeds=[{', '.join(str(s) for s in range(args.seeds))}]")
    return load_config(_config_path(name_or_path), overrides)


def _backend(args) -> tuple:
    """(Ray backend or None, torch threads per sequential run or None) from the run options."""
    from experiments.ray_backend import backend_from_options

    return backend_from_options(workers=args.workers, address=args.ray_address, cpus_per_run=args.cpus_per_run,
                                gpus_per_run=args.gpus_per_run)


def _run_and_print(cfg, args) -> None:
    """``run_experiment`` with the command's options; the summary printed, also of the runs that
    finished when some failed (the error then ends the command)."""
    from experiments.runner import RunsFailedError, run_experiment

    backend, threads = _backend(args)
    try:
        results = run_experiment(cfg, args.out, device=args.device, resume=args.resume, progress=not args.quiet,
                                 backend=backend, threads=threads)
    except RunsFailedError as e:
        if e.results is not None:
            _print_summary(e.results, Path(args.out))
        raise
    _print_summary(results, Path(args.out))


def cmd_demo(args) -> int:
    cfg = _load(args, "demo")
    _run_and_print(cfg, args)
    return 0


def cmd_tune(args) -> int:
    from experiments.tune import tune, write_results

    cfg = _load(args, args.config)
    from experiments.runner import prepare_out_dir
    from experiments.tune import stage_grids

    from bimodal.device import resolve_device

    backend, threads = _backend(args)
    if backend is None:  # a Ray task resolves its device on its node
        resolve_device(args.device or (None if cfg.experiment.device == "auto" else cfg.experiment.device))
    prepare_out_dir(args.out)

    result = tune(cfg, seed=args.seed, device=args.device, progress=not args.quiet,
                  grids=stage_grids(args.stages) if args.stages else None, backend=backend, threads=threads)
    print(write_results(result, args.out))
    return 0


def cmd_reproduce(args) -> int:
    from experiments.runner import run_ablation

    cfg = _load(args, args.config)
    if cfg.ablation:
        backend, threads = _backend(args)
        run_ablation(cfg, args.out, device=args.device, resume=args.resume, progress=not args.quiet,
                     backend=backend, threads=threads)
        print(f"ablation table: {Path(args.out) / 'ablation.md'}")
    else:
        _run_and_print(cfg, args)
    return 0


def _print_summary(results: dict, out: Path) -> None:
    failed = results.get("failed_runs") or []
    print(f"\n{results['experiment']}: {len(results['runs'])} runs (seeds x speaker folds)"
          + (f", {len(failed)} failed" if failed else "") + f", {results['timings']['total']:.0f} s")
    for c in results.get("claims", []):
        word = c.get("verdict") or {True: "HELD", False: "NOT HELD", None: "NOT RUN"}[c["held"]]
        vals = ", ".join(f"{k}={v:.3f}" for k, v in c["values"].items() if isinstance(v, float))
        print(f"  [{word}] {c['claim']} ({vals})")
    print(f"results: {out / 'results.json'}\nreport:  {out / 'report.md'}")


def cmd_extract(args) -> int:
    from experiments.extract import extract_features

    path = extract_features(args.model, args.data, args.out, feature=args.feature, slices=tuple(args.slices),
                            preprocessor=args.preprocessor, device=args.device, progress=not args.quiet)
    print(f"features: {path}")
    return 0


def cmd_data_synth(args) -> int:
    from data_prep.synth.corpus import main as synth_main

    return synth_main(args.rest) or 0


def cmd_data_check(args) -> int:
    from data_prep.check import check_corpus

    if args.config is None:
        report = check_corpus(args.root, source=args.source, montage=args.montage, frames_per_speaker=args.frames,
                              clips_per_speaker=args.clips_per_speaker, progress=not args.quiet,
                              reader_kwargs=_check_reader_kwargs(args))
        print(report.format())
        return 0 if report.ok else 1
    return _check_with_config(args, check_corpus)


def _check_with_config(args, check_corpus) -> int:
    """``data check ROOT --config NAME``: the corpus read with the config's reader and preprocessing,
    and whether every fold the config would make can run on it (experiments.plan)."""
    from experiments.config import prep_config
    from experiments.pipeline import load_utterances, reader_options
    from experiments.plan import plan_problems

    args.set = [f"data.root={json.dumps(str(args.root))}"] + list(args.set or [])
    cfg = _load(args, args.config)
    if cfg.data.source == "synth":
        raise BimodalError(f"--config {args.config}: data.source is 'synth', the generated corpus; data check reads "
                           "a corpus folder (set data.source with --set, or use a config of a real corpus)")
    report = check_corpus(args.root, source=cfg.data.source, cfg=prep_config(cfg), montage=args.montage,
                          frames_per_speaker=args.frames, clips_per_speaker=args.clips_per_speaker,
                          progress=not args.quiet, reader_kwargs=reader_options(cfg))
    print(report.format())
    problems = plan_problems(cfg, load_utterances(cfg, progress=not args.quiet)) if report.ok else []
    if problems:
        print(f"\nconfig {cfg.experiment.name!r} CANNOT run on this corpus:\n  " + "\n  ".join(problems))
    elif report.ok:
        print(f"\nconfig {cfg.experiment.name!r} can run on this corpus: every fold of seeds "
              f"{cfg.experiment.seeds} has at least 2 cross-validation groups and every label in training")
    return 0 if report.ok and not problems else 1


def _check_reader_kwargs(args) -> dict:
    """``--vocabulary`` as the GRID reader takes it: a vocabulary name, else the list of words."""
    if args.vocabulary is None:
        return {}
    if args.source != "grid":
        from bimodal.errors import ConfigError

        raise ConfigError(f"--vocabulary applies to --source grid only, not {args.source!r}")
    from data_prep.grid import VOCABULARIES

    words = args.vocabulary
    return {"vocabulary": words[0] if len(words) == 1 and words[0] in VOCABULARIES else list(words)}


def cmd_bench(args) -> int:
    from benchmarks.run import main as bench_main

    return bench_main(args.rest) or 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="bimodal", description=__doc__)
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars, warnings only")
    sub = p.add_subparsers(dest="command", required=True)

    def run_opts(sp):
        sp.add_argument("--out", required=True, help="output folder (results.json, report.md, plots, checkpoints)")
        sp.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: the config's, auto)")
        sp.add_argument("--seeds", type=int, default=None, help="run seeds 0..N-1 instead of the config's seeds")
        sp.add_argument("--resume", action="store_true", help="skip (seed, fold) runs and models already finished")
        sp.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                        help="override a config value (TOML syntax), e.g. --set finetune.epochs=5")
        ray_opts(sp, "the (seed, fold) runs")

    def ray_opts(sp, units):
        ray = sp.add_argument_group("parallel runs on Ray (pip install -e '.[ray]'; README: Running on several "
                                    "cores or a Ray cluster)")
        ray.add_argument("--workers", type=int, default=None, metavar="N",
                         help=f"run {units} as tasks of a local Ray with N worker CPUs")
        ray.add_argument("--ray-address", default=None, metavar="ADDR",
                         help="run them on the Ray cluster at ADDR (auto: the one this machine joined); --out and "
                              "the data must be at the same paths on every node")
        ray.add_argument("--cpus-per-run", type=float, default=None, metavar="N",
                         help="CPUs each task takes and its torch threads (default 1); without Ray: the torch "
                              "threads of each sequential run (default: torch's own)")
        ray.add_argument("--gpus-per-run", type=float, default=None, metavar="F",
                         help="share of a GPU each task takes, e.g. 0.5 (default 0: the runs use the CPU)")

    d = sub.add_parser("demo", help="the main job: every paper setting, small scale, embedded corpus, CPU-sized")
    run_opts(d)
    d.set_defaults(func=cmd_demo)

    r = sub.add_parser("reproduce", help="run an experiment config (a path, or a name in experiments/configs)")
    r.add_argument("config")
    run_opts(r)
    r.set_defaults(func=cmd_reproduce)

    t = sub.add_parser("tune", help="choose sparsity and fine-tuning settings by cross-validation on the "
                                    "training split only (experiments/tune.py)")
    t.add_argument("config")
    t.add_argument("--out", required=True, help="output folder (tuning.json, tuning.md)")
    t.add_argument("--device", default=None)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--stages", default=None, metavar="audio_rbm,rbm,dae",
                   help="the stages to run, in this order (default: all that apply; shared_size, the shared "
                        "layer's size, mirror, mirrored mouth crops, frontend, the conv video front end, and whitening, what "
                        "the whitening of a config with data.extra_av is fitted on, sparsity_update, where the RBMs' "
                        "sparsity term acts, and video_rbm, the first video RBM's own sparsity, only when named)")
    t.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a config value")
    ray_opts(t, "each stage's candidates")
    t.set_defaults(func=cmd_tune)

    e = sub.add_parser("extract", help="utterance features from a trained model for your own classifiers")
    e.add_argument("--model", required=True,
                   help="a run's checkpoint folder (DIR/checkpoints/seed0_fold0) or the feature's checkpoint file")
    e.add_argument("--feature", default="bimodal_dae.both",
                   help="which feature, by its name in the results and the report (SOURCE.INPUTS, e.g. "
                        "bimodal_dae.video, rbm.audio, raw.both; experiments/registry.py lists them)")
    e.add_argument("--data", required=True, help="a dataset folder in the generic layout ROOT/speaker/label/utt.*")
    e.add_argument("--out", required=True,
                   help="feats.npz (or .parquet when pandas and pyarrow are installed); clips that cannot be used "
                        "are skipped with a warning and listed in the file (see experiments/extract.py)")
    e.add_argument("--slices", type=int, nargs="+", default=[1, 3])
    e.add_argument("--preprocessor", default=None,
                   help="preprocessor file (default: preprocessor.npz in the checkpoint folder)")
    e.add_argument("--device", default=None)
    e.set_defaults(func=cmd_extract)

    data = sub.add_parser("data", help="data tools").add_subparsers(dest="data_command", required=True)
    s = data.add_parser("synth", help="generate the embedded audio-visual corpus (see --help)", add_help=False)
    s.add_argument("rest", nargs=argparse.REMAINDER)
    s.set_defaults(func=cmd_data_synth)
    c = data.add_parser("check", help="read a corpus as an experiment would and report what is usable "
                                      "(exit status 1 when nothing is)")
    c.add_argument("root", help="corpus folder")
    from data_prep.readers import READERS

    c.add_argument("--source", default="folder", choices=[s for s in READERS if s != "synth"],
                   help="reader (as data.source in a config)")
    c.add_argument("--vocabulary", nargs="+", default=None, metavar="digits|letters|WORD",
                   help="GRID only: the words cut as tokens (default: digits), a vocabulary name or a list of words")
    c.add_argument("--montage", default="data-check-montage.png",
                   help="PNG of tracked mouth crops, a few frames of one clip per speaker")
    c.add_argument("--frames", type=int, default=6, help="montage frames per clip")
    c.add_argument("--clips-per-speaker", type=int, default=1, help="montage rows per speaker")
    c.add_argument("--config", default=None,
                   help="also say whether this experiment config (a path or a name) can run on the corpus: its "
                        "reader, labels and preprocessing apply, and every fold it would make is checked")
    c.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE", help="override a value of --config")
    c.set_defaults(func=cmd_data_check)

    b = sub.add_parser("bench", help="throughput benchmarks (see --help)", add_help=False)
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # `bench` and `data synth` own their options; argparse's REMAINDER would not pass leading --flags on.
    passthrough = {("bench",): cmd_bench, ("data", "synth"): cmd_data_synth}
    for words, func in passthrough.items():
        if tuple(argv[:len(words)]) == words:
            _logging(quiet=False)
            return _run(func, argparse.Namespace(rest=argv[len(words):]))
    args = build_parser().parse_args(argv)
    _logging(args.quiet)
    return _run(args.func, args)


def _logging(quiet: bool) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")


def _run(func, args) -> int:
    try:
        return func(args)
    except BimodalError as e:
        print(f"bimodal: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        out = getattr(args, "out", None)
        hint = ""
        if out is not None and hasattr(args, "resume"):
            hint = (f" Finished (seed, fold) runs are kept under {out}; run the same command with --resume to "
                    "continue from them.")
        print(f"\nbimodal: interrupted.{hint}", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
