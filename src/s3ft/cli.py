"""The `s3ft` command.

    s3ft run RECIPE.yaml [--key value ...] [--force STAGE]   every stage, into output_dir
    s3ft generate|judge|paraphrase|build|train|eval RECIPE.yaml [--key value ...]
    s3ft judge --task TASK --predictions PRED.jsonl --output OUT.jsonl [--judge NAME|FILE.py:FUNCTION]
    s3ft compare RECIPE.yaml [--methods base,sft,ssr,sdft,s3ft] [--seeds 1,2,3] [--general_benchmarks mmlu,...]
    s3ft demo [--key value ...]                               S3FT on the embedded model + squad
    s3ft fields                                               every recipe key with its help
    s3ft export RUN_DIR [--method M] [--output DIR] [--dtype D] [--push_to_hub ORG/NAME]   a plain transformers folder
    s3ft predict RUN_DIR --input IN.jsonl --output OUT.jsonl [--method M]   answers from the fine-tuned model
    s3ft chat RUN_DIR [--method M]                            talk to the fine-tuned model (stdin, a terminal or a pipe)
    s3ft prune RUN_DIR [--to COPY]                            keep a run's results, drop its model weights

Recipe keys and overrides are the fields of `s3ft.config.S3FTConfig` (`s3ft fields`)."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from importlib import resources
from pathlib import Path
from typing import Any

USAGE = __doc__


def _common_env() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    from s3ft.models import show_download_progress

    show_download_progress()  # Hub downloads show progress; transformers' per-load bars stay off


def _split_force(rest: list[str]) -> tuple[list[str], set[str]]:
    from s3ft.config import ConfigError
    from s3ft.stages.common import STAGE_GROUPS

    force, out, i = set(), [], 0
    while i < len(rest):
        if rest[i] == "--force":
            if i + 1 >= len(rest):
                raise ConfigError(f"command line: --force needs a stage name ({', '.join(STAGE_GROUPS)})")
            force.add(rest[i + 1])
            i += 2
        elif rest[i].startswith("--force="):
            force.add(rest[i].split("=", 1)[1])
            i += 1
        else:
            out.append(rest[i])
            i += 1
    bad = {f for f in force if f.split(".", 1)[0] not in STAGE_GROUPS}
    if bad:
        raise ConfigError(f"command line: --force takes a stage name ({', '.join(STAGE_GROUPS)}, or one stage such as "
                          f"eval.base), got {', '.join(sorted(bad))}")
    return out, force


def demo_recipe() -> Path:
    return Path(str(resources.files("s3ft") / "recipes" / "demo.yaml"))


def cmd_run(args, rest: list[str]) -> int:
    from s3ft.config import load_config
    from s3ft.pipeline import run_all

    rest, force = _split_force(rest)
    cfg = load_config(args.recipe, rest)
    t0 = time.time()
    metrics = run_all(cfg, force=force)
    _print_result(cfg, metrics, time.time() - t0)
    return 0


def _print_result(cfg, metrics, seconds: float) -> None:
    mix = metrics.get("mix") or {}
    print()
    if mix:
        p, c = mix["percent"], mix["counts"]
        print(f"Training-set mix ({mix['n']} rows): own {c['self']} ({p['self']}%) / "
              + (f"sampled {c['sampled']} ({p['sampled']}%) / " if "sampled" in c else "")
              + f"paraphrase {c['paraphrase']} ({p['paraphrase']}%) / gold {c['gold']} ({p['gold']}%)")
    for name, a in (metrics.get("in_domain") or {}).items():
        print(f"In-domain accuracy {name:>6}: {a['k']}/{a['n']} = {a['accuracy']}%  (95% CI {a.get('ci95')})")
    print(f"Wall time {seconds / 60:.1f} min. Files: {cfg.output_dir}/ (summary.md, metrics.json, manifest.json)")


def cmd_stage(args, rest: list[str]) -> int:
    from s3ft.config import load_config
    from s3ft.pipeline import run_stage

    rest, force = _split_force(rest)
    cfg = load_config(args.recipe, rest)
    result = run_stage(cfg, args.command, force=force)  # up to date: nothing to do; interrupted: resumes
    if isinstance(result, dict):
        for name, a in result.items():
            print(f"In-domain accuracy {name}: {a['k']}/{a['n']} = {a['accuracy']}%")
    else:
        print(f"wrote {result}")
    return 0


def cmd_judge_file(args, rest: list[str]) -> int:
    """The stable judge contract: PRED rows {id, response} -> OUT rows + {correct, reason, extracted}.

    OUT is written whole or not at all (a temp file renamed over it): a rerun, or a retry after a
    kill or a full disk, replaces it and never appends duplicates; OUT may not be PRED. Each
    prediction must name one example once: an id given twice, or an id that names different
    examples in two splits (then --split says which), is refused - the printed accuracy counts
    every example once, judged against its own gold."""
    from s3ft.checks import brief
    from s3ft.config import load_config
    from s3ft.runs import write_jsonl
    from s3ft.session import Session
    from s3ft.tasks.jsonl import iter_jsonl_rows

    pred_path, out = Path(args.predictions), Path(args.output)
    _check_judge_output(pred_path, out)
    overrides = (["--task", args.task] if args.task else []) + (["--judge", args.judge] if args.judge else []) + rest
    cfg = load_config(getattr(args, "recipe", None), overrides)
    s = Session(cfg)
    name = s.judge_name
    judge = s.judge().fn
    if args.split and args.split not in s.task.splits:
        raise ValueError(f"--split {args.split!r}: task {cfg.task} has no such split; it has {', '.join(s.task.splits)}")
    found: dict[str, dict[str, Any]] = {}  # id -> {split: example}
    for split in [args.split] if args.split else s.task.splits:
        for e in s.task.load(split):
            found.setdefault(e.id, {}).setdefault(split, e)
    preds, lines = [], {}
    of_task = f"task {cfg.task}" + (f" split {args.split}" if args.split else "")
    for lineno, row in iter_jsonl_rows(pred_path):
        at = f"{pred_path} line {lineno}"
        for key in ("id", "response"):
            if key not in row:
                raise ValueError(f"{at}, field {key!r}: missing (rows need id and response)")
        if isinstance(row["id"], bool) or not isinstance(row["id"], (str, int)):
            raise ValueError(f"{at}, field 'id': expected a string or an integer id, got {brief(row['id'])}")  # noqa: TRY004
        rid = str(row["id"])
        if rid in lines:
            raise ValueError(f"{at}, field 'id': duplicate id {brief(rid)} (also on line {lines[rid]}); give each "
                             "example one prediction (a second one would be counted twice in the accuracy)")
        if rid not in found:
            raise ValueError(f"{at}, field 'id': {brief(rid)} is not an example id of {of_task}")
        splits = found[rid]
        if len({json.dumps(e.to_dict(), sort_keys=True, default=str) for e in splits.values()}) > 1:
            raise ValueError(f"{at}, field 'id': {brief(rid)} names a different example in each of the splits "
                             f"{', '.join(splits)}; say which split the predictions are for: --split {next(iter(splits))}")
        if not isinstance(row["response"], str):
            raise ValueError(f"{at}, field 'response': expected a string, got {type(row['response']).__name__}")  # noqa: TRY004
        lines[rid] = lineno
        preds.append((row, next(iter(splits.values()))))
    counts = {True: 0, False: 0, None: 0}
    rows = []
    for start in range(0, len(preds), 64):
        chunk = preds[start : start + 64]
        verdicts = judge([e for _, e in chunk], [r["response"] for r, _ in chunk])
        for (r, _), v in zip(chunk, verdicts):
            rows.append({**r, **v.to_dict()})
            counts[v.correct] += 1
    try:
        write_jsonl(out, rows)
    except OSError as e:
        raise ValueError(f"--output {out}: cannot write it ({e.strerror or e}); it is unchanged") from e
    n = len(preds)
    print(f"judged {n} predictions with the {name} judge: {counts[True]} correct, {counts[False]} wrong, "
          f"{counts[None]} cannot judge; accuracy {100 * counts[True] / n if n else 0:.2f}% -> {args.output}")
    return 0


def _check_judge_output(pred: Path, out: Path) -> None:
    """--output must be a file path of its own: not a folder, not under a file, not the predictions."""
    from s3ft.checks import file_above, path_problem, same_file

    if out.is_dir():
        raise ValueError(f"--output {out} is a folder; give the file to write, e.g. {out / 'judged.jsonl'}")
    if os.path.lexists(out) and (problem := path_problem(out)) is not None and "not found" not in problem:
        raise ValueError(f"--output {out} {problem if problem.startswith('is ') else '(' + problem + ')'}; give a file path")
    if same_file(out, pred):
        raise ValueError(f"--output {out} is the predictions file (--predictions {pred}): the judged rows would replace "
                         "the predictions; write them to another file")
    if (parent := file_above(out)) is not None:
        raise ValueError(f"--output {out}: {parent} is a file, so {out} cannot be made under it")


def cmd_compare(args, rest: list[str]) -> int:
    from s3ft.compare import run_compare
    from s3ft.config import load_config

    rest, force = _split_force(rest)
    cfg = load_config(args.recipe, rest)
    result = run_compare(cfg, force=force)
    seeds = result["per_seed"]
    print()
    for name in result["methods"]:
        accs = [p["in_domain"][name]["accuracy"] for p in seeds.values() if name in p["in_domain"]]
        mix = next(iter(seeds.values()))["mix"].get(name) if seeds else None
        mix_s = f"  mix own/para/gold {mix['percent']['self']}/{mix['percent']['paraphrase']}/{mix['percent']['gold']}%" if mix else ""
        if mix and "sampled" in mix["percent"]:
            mix_s += f" (sampled {mix['percent']['sampled']}%)"
        print(f"{name:>5}: in-domain {', '.join(f'{a}%' for a in accs)}{mix_s}")
    print(f"Wall time {result['wall_seconds'] / 60:.1f} min. Report: {Path(cfg.output_dir) / 'report' / 'report.html'}")
    return 0


def cmd_demo(args, rest: list[str]) -> int:
    args.recipe = str(demo_recipe())
    print("s3ft demo: S3FT on the embedded SmolLM2-135M-Instruct and the bundled SQuAD task "
          f"(recipe {args.recipe}; 25 minutes or less on 2 CPU cores)", flush=True)
    return cmd_run(args, rest)


def _trained(args):
    from s3ft.trained import find_trained

    if getattr(args, "point", None):
        from s3ft.trained import find_point

        return find_point(args.run_dir, args.method, args.point, args.seed)
    return find_trained(args.run_dir, args.method, args.seed)


def _no_extra(command: str, rest: list[str]) -> None:
    if rest:
        raise ValueError(f"s3ft {command}: unrecognized arguments: {' '.join(rest)} (s3ft {command} --help lists them)")


def _generation_settings(rest: list[str]) -> dict[str, Any]:
    """`--key value` generation settings (backend, device, ...) for predict and chat."""
    from s3ft.config import parse_overrides

    return parse_overrides(rest) if rest else {}


def cmd_export(args, rest: list[str]) -> int:
    from s3ft.export import check_repo_id, export, push_to_hub

    _no_extra("export", rest)
    if args.push_to_hub:
        check_repo_id(args.push_to_hub)  # before the merge, not after it
    tm = _trained(args)
    out = export(tm, args.output, args.dtype)
    print(f"exported the {tm.describe()} -> {out}")
    if args.push_to_hub:
        print(f"uploaded to {push_to_hub(out, args.push_to_hub, private=args.private)}")
    return 0


def cmd_predict(args, rest: list[str]) -> int:
    from s3ft.predict import predict

    settings = _generation_settings(rest)
    if args.backend:
        settings["backend"] = args.backend
    r = predict(_trained(args), args.input, args.output, prompt_field=args.prompt_field,
                messages_field=args.messages_field, id_field=args.id_field, max_new_tokens=args.max_new_tokens,
                settings=settings)
    print(f"predict: {r['written']} answers written ({r['done_before']} already there), {r['rows']} rows -> {r['output']}"
          + (f"; {r['cut_off']} cut off at max_new_tokens" if r["cut_off"] else ""))
    return 0


def cmd_chat(args, rest: list[str]) -> int:
    from s3ft.predict import chat

    settings = _generation_settings(rest)
    if args.backend:
        settings["backend"] = args.backend
    return chat(_trained(args), max_new_tokens=args.max_new_tokens, settings=settings)


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return n


def _add_use_parsers(sub) -> None:
    """export, predict, chat: a finished run's fine-tuned model (docs/using-the-model.md); prune."""
    def run_args(sp) -> None:
        sp.add_argument("run_dir", help="the run directory (output_dir of `s3ft run` or `s3ft compare`)")
        sp.add_argument("--method", help="which fine-tuned model (default: the run's method)")
        sp.add_argument("--seed", type=int, help="`s3ft compare` runs: the training seed (seed-<k>/) when there are several; "
                        "with --point, which of the sweep's seeds (default: its first)")
        sp.add_argument("--point", help="`s3ft compare` runs with a sweep: `recommended` (the best point within the "
                        "recipe's forgetting budget) or lr=LR,epoch=E[,finetuning=lora|full][,alpha=A] of --method")

    ep = sub.add_parser("export", help="the fine-tuned model as a standard transformers folder (+ model card)",
                        description="Merge the run's LoRA adapter into its base model in float32 (or take the full "
                        "fine-tuned model), cast it to --dtype and write a transformers folder with the tokenizer, chat "
                        "template and a model card (README.md) built from the run's results.")
    run_args(ep)
    ep.add_argument("--output", help="folder to write (default: RUN_DIR/[seed-<k>/]<method>/export)")
    ep.add_argument("--dtype", choices=("float32", "bfloat16", "float16"),
                    help="saved dtype (default: the dtype the run evaluated in)")
    ep.add_argument("--push_to_hub", metavar="ORG/NAME", help="also upload the folder to this Hub model repository")
    ep.add_argument("--private", action="store_true", help="with --push_to_hub: create the repository private")
    pp = sub.add_parser("predict", help="answers of the fine-tuned model for a JSONL file of prompts (resumable)",
                        description="Rows of --input (a prompt field or a messages field; ids from --id_field, else "
                        "the line number) -> --output rows {id, prompt, response, stop}, written as they are generated; "
                        "a rerun continues. Generation settings (--backend, --device, --batch_size, --openai_base_url, "
                        "...) may be given as --key value.")
    run_args(pp)
    pp.add_argument("--input", required=True, help="JSONL file of prompts")
    pp.add_argument("--output", required=True, help="JSONL file to write (not the input)")
    which = pp.add_mutually_exclusive_group()
    which.add_argument("--prompt_field", help="field holding the prompt text (default: prompt)")
    which.add_argument("--messages_field", help="field holding chat messages (a last assistant turn is left out)")
    pp.add_argument("--id_field", default="id", help="field holding the row id (default: id; else the line number)")
    pp.add_argument("--max_new_tokens", type=_positive_int, help="answer length limit (default: the run's evaluation limit)")
    pp.add_argument("--backend", choices=("hf", "vllm", "openai"), help="generation backend (default: the run's)")
    cp = sub.add_parser("chat", help="talk to the fine-tuned model (lines from stdin; /reset, /exit)",
                        description="Each line of stdin is a user turn; the reply is printed. /reset starts a new "
                        "conversation, /exit or end of input quits. Works with a pipe.")
    run_args(cp)
    cp.add_argument("--max_new_tokens", type=_positive_int, help="reply length limit (default: the run's evaluation limit)")
    cp.add_argument("--backend", choices=("hf", "vllm", "openai"), help="generation backend (default: the run's)")
    rp = sub.add_parser("prune", help="keep a run's results, drop its model weights (a resume finds its stages done)",
                        description="Remove the weight files of every model folder of RUN_DIR (and the Trainer "
                        "checkpoints), leaving pruned.json in each: a resumed run finds the stages done on those "
                        "models up to date and carries on (s3ft compare makes a pruned model again where a result "
                        "still needs it; export, predict and chat refuse one). With --to, write a pruned copy and "
                        "leave RUN_DIR as it is (it may still be running).")
    rp.add_argument("run_dir", help="the run directory (output_dir of `s3ft run` or `s3ft compare`)")
    rp.add_argument("--to", help="write a copy without the weights to this new or empty folder instead")


def cmd_prune(args, rest: list[str]) -> int:
    from s3ft.prune import prune

    _no_extra("prune", rest)
    r = prune(args.run_dir, args.to)
    print(f"prune: {r['models']} model folders, {r['bytes'] / 2**20:.1f} MiB of weights "
          f"{'left out of' if args.to else 'removed from'} {r['output']}")
    return 0


USE_COMMANDS = {"export": cmd_export, "predict": cmd_predict, "chat": cmd_chat, "prune": cmd_prune}


OVERRIDES = """Any recipe key overrides the recipe: --key value (a list key takes several values:
--lora_target_modules q_proj v_proj). `s3ft fields` lists every key with its type, default and
help. --force STAGE re-runs a stage once: a group (generate, judge, paraphrase, build, train,
eval, general, logprob) or one stage by its manifest name (eval.base, train.sft)."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="s3ft", description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)
    for name, helptext in (("run", "all stages"), ("compare", "every method, shared data pass, report"), ("generate", "own answers"), ("paraphrase", "paraphrases"),
                           ("build", "training set"), ("train", "fine-tune"), ("eval", "in-domain evaluation")):
        sp = sub.add_parser(name, help=helptext, description=f"s3ft {name}: {helptext}.\n\n{OVERRIDES}",
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            usage=f"s3ft {name} RECIPE [--key value ...] [--force STAGE ...]")
        sp.add_argument("recipe", help="recipe YAML file")
    jp = sub.add_parser("judge", help="judge own answers (stage) or a predictions file",
                        description="s3ft judge RECIPE  (the judge stage of a run), or\n"
                        "s3ft judge --task TASK --predictions PRED.jsonl --output OUT.jsonl [--judge NAME|FILE.py:FUNCTION]",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    jp.add_argument("recipe", nargs="?", help="recipe YAML file")
    sub.add_parser("demo", help="S3FT on the embedded model and bundled squad (25 min or less on 2 cores)",
                   description="s3ft demo: S3FT on the embedded SmolLM2-135M-Instruct and the bundled SQuAD task "
                               "(src/s3ft/recipes/demo.yaml).\n\n" + OVERRIDES,
                   usage="s3ft demo [--key value ...]", formatter_class=argparse.RawDescriptionHelpFormatter)
    sub.add_parser("fields", help="list every recipe key")
    _add_use_parsers(sub)
    return p


def _fields() -> str:
    from s3ft.config import fields_help

    return fields_help()


def _judge_file_parser() -> argparse.ArgumentParser:
    """`s3ft judge --predictions ...`: options only (no RECIPE positional that could swallow an
    override's value such as `--data_files "{train: x.jsonl}"`)."""
    jp = argparse.ArgumentParser(prog="s3ft judge")
    jp.add_argument("--debug", action="store_true")
    jp.add_argument("--recipe", help="recipe YAML file (optional)")
    jp.add_argument("--predictions", required=True, help="JSONL with rows {id, response}")
    jp.add_argument("--output", required=True, help="JSONL to write (rows + correct, reason, extracted)")
    jp.add_argument("--task", help="task the ids belong to")
    jp.add_argument("--judge", help="judge name, or your own FILE.py:FUNCTION (default: the task's)")
    jp.add_argument("--split", help="split the prediction ids belong to (needed when an id names different examples "
                                    "in two splits; default: any split)")
    return jp


def main(argv: list[str] | None = None) -> int:
    _common_env()
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["judge"] and any(a == "--predictions" or a.startswith("--predictions=") for a in argv):
        args, rest = _judge_file_parser().parse_known_args(argv[1:])
        args.command = "judge"
        if not (args.task or args.recipe):
            parser.error("s3ft judge --predictions needs --task (or --recipe)")
    else:
        args, rest = parser.parse_known_args(argv)
    from s3ft.config import ConfigError
    from s3ft.models import ModelError
    from s3ft.runs import RunLockedError

    try:
        if args.command == "fields":
            print(_fields(), flush=True)
            return 0
        if args.command != "train":  # torchrun / accelerate launch: only training is multi-process
            from s3ft.pipeline import require_single_process

            require_single_process(f"s3ft {args.command}")
        if args.command == "demo":
            return cmd_demo(args, rest)
        if args.command == "judge" and getattr(args, "predictions", None):
            return cmd_judge_file(args, rest)
        if args.command == "judge" and not args.recipe:
            parser.error("s3ft judge needs a RECIPE, or --predictions PRED.jsonl --output OUT.jsonl --task TASK")
        if args.command in USE_COMMANDS:
            return USE_COMMANDS[args.command](args, rest)
        if args.command == "run":
            return cmd_run(args, rest)
        if args.command == "compare":
            return cmd_compare(args, rest)
        return cmd_stage(args, rest)
    except KeyboardInterrupt:
        print("\ns3ft: interrupted. Finished rows are saved; run the same command again to resume.", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `s3ft fields | head`: the reader has gone; stop quietly, as `yes | head` does
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # (no second error when Python flushes)
        except (OSError, ValueError, AttributeError):
            pass
        return 141
    except (ConfigError, ModelError, RunLockedError, ValueError, OSError) as e:
        if args.debug:
            raise
        print(f"s3ft: error: {_os_error(e) if isinstance(e, OSError) else e}", file=sys.stderr)
        return 2


def _os_error(e: OSError) -> str:
    """An OSError (a full disk, a read-only filesystem, a permission) as one line naming the file."""
    if e.filename is None:
        return f"{e.strerror or e}"
    return f"{e.filename}: {e.strerror or e}" + (f" (-> {e.filename2})" if e.filename2 else "")


if __name__ == "__main__":
    sys.exit(main())
