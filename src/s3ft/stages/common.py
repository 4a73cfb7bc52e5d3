"""The bookkeeping every stage shares, written once.

A stage is a plain function that computes a fingerprint of what its output depends on and hands
its work to `Stages.run`, which

- skips it when the manifest records it done with the same fingerprint and its outputs exist
  (logged once as "up to date");
- on `--force NAME` re-runs it once per invocation, where NAME is the stage's name or its group
  (`--force eval` re-runs `eval.base`, `eval.s3ft`, ...; the same for every command);
- clears outputs written under another fingerprint, keeps those of an interrupted run with the
  same fingerprint so that a resumable stage continues (`pending` gives the ids still to do);
- records status, fingerprint, wall time and the stage's summary fields in manifest.json.

Also here: the generation settings (`Decoding`) and the judge (`Judge`) as the stages receive
them, each with the fingerprint of what their output depends on."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from s3ft.runs import JsonlWriter, RunDir, fingerprint, read_jsonl, versions
from s3ft.types import Example, Verdict

# Rows record why generation stopped (cut-off answers are never targets): outputs written before
# they did are regenerated once (part of every generating stage's fingerprint).
STOP_RECORDED = "rows record their stop reason"

# The stage groups, in pipeline order; `--force` takes one of these (or a stage's full name).
STAGE_GROUPS = ("generate", "sample", "judge", "paraphrase", "likelihood", "build", "train", "eval", "general", "ifeval", "drift", "logprob")

_said: set[str] = set()


def log(msg: str, once: bool = False) -> None:
    """Progress line; `once` lines (a stage found up to date) are printed once per process."""
    if once:
        if msg in _said:
            return
        _said.add(msg)
    print(f"[s3ft] {msg}", flush=True)


def libs_fp(*extra: str) -> list[str]:
    """Versions of the libraries whose upgrade can change a stage's output (part of its fingerprint)."""
    v = versions()
    return [f"{k}={v.get(k)}" for k in ("s3ft", "torch", "transformers", *extra)]


def examples_fp(examples: Sequence[Example]) -> str:
    return fingerprint([(e.id, e.prompt, e.gold) for e in examples])


def by_id(rows: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in rows}


@dataclass
class Stages:
    """Runs stages in one run directory under the shared bookkeeping rules (module docstring).
    `rerun` is shared by every `Stages` of one invocation: a stage forced once is not forced again
    when a later stage asks for it."""

    run: RunDir
    force: frozenset[str]
    rerun: set[tuple[str, str]]

    def forced(self, name: str) -> bool:
        asked = name in self.force or name.split(".", 1)[0] in self.force
        return asked and (str(self.run.path), name) not in self.rerun

    def run_stage(self, name: str, fp: str, outputs: Sequence[Path], work: Callable[[dict[str, Any]], None],
                  resumable: bool = True, scratch: Sequence[Path] = ()) -> dict[str, Any]:
        """Run `work(info)` unless stage `name` is up to date; returns the stage's manifest record
        (with the summary fields `work` put in `info`). A stage that is not `resumable` starts
        from empty outputs every time it runs. `scratch`: work files that go with the outputs
        (removed with them when the stage starts over) but need not exist when it is done."""
        forced = self.forced(name)
        if not forced and self.run.is_done(name, fp, outputs):
            log(f"{name}: up to date ({outputs[0]})", once=True)
            return self.run.stage_record(name) or {}
        with self.run.stage(name, fp, [*outputs, *scratch], force=forced or not resumable) as info:
            work(info)
        if forced:
            self.rerun.add((str(self.run.path), name))
        return self.run.stage_record(name) or info


def pending(out: Path, examples: Sequence[Example]) -> tuple[list[Example], int]:
    """The examples without a row in `out` yet (a rerun resumes), and how many are done."""
    done = {r["id"] for r in read_jsonl(out)}
    return [e for e in examples if e.id not in done], len(done)


def stream_rows(out: Path, todo: Sequence[Example], generator, prompts: Sequence, max_new_tokens: int,
                gen_kwargs: dict[str, Any], desc: str,
                rows_for: Callable[[list[tuple[Example, str, str]]], list[dict[str, Any]]],
                flush_every: int) -> None:
    """Generate for `todo` and append the rows `rows_for` makes of every `flush_every` answers
    (given as (example, text, stop reason))
    to `out` as soon as they exist (a crash loses at most that many). Every row records why its
    generation stopped (`stop`: end_of_turn, stop_string or length - cut off at max_new_tokens)."""
    with JsonlWriter(out) as w:
        if not todo:
            return
        buf: list[tuple[Example, str, str]] = []

        def flush() -> None:
            stops = {e.id: stop for e, _, stop in buf}
            for r in rows_for(buf):
                w.write({**r, "stop": stops[r["id"]]})
            buf.clear()

        for i, text, stop in generator.stream(prompts, max_new_tokens, desc=desc, **gen_kwargs):
            buf.append((todo[i], text, stop))
            if len(buf) >= flush_every:
                flush()
        if buf:
            flush()


@dataclass(frozen=True)
class Decoding:
    """How answers are generated, as the generating stages receive it."""

    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    backend: str
    dtype: str
    served: tuple = ()  # openai backend: (served model name, server URL)

    def kwargs(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "top_p": self.top_p, "seed": self.seed}

    def fingerprint(self) -> list[Any]:
        """What a generation's output depends on besides model and prompts."""
        sampled = self.temperature > 0  # the seed matters to generation only when sampling
        return [self.backend, self.max_new_tokens, self.temperature, self.top_p if sampled else None,
                self.seed if sampled else None, self.dtype] + list(self.served) + libs_fp() + [STOP_RECORDED]


@dataclass
class Judge:
    """A judge as the stages receive it: `fn(examples, responses) -> verdicts`, and `identity`,
    what its verdicts depend on besides the examples (name, settings, judge model or code hash,
    library versions)."""

    name: str
    fn: Callable[[Sequence[Example], Sequence[str]], list[Verdict]]
    identity: list[Any]

    def fingerprint(self, examples: Iterable[Example]) -> list[Any]:
        """What its verdicts on `examples` depend on: the judge, and each example's gold and
        extras (meta: the qa judge's aliases, the code judge's tests, your own judge's fields)."""
        return self.identity + [fingerprint([(e.id, e.gold, e.meta) for e in examples])]

    def rows(self, examples: Sequence[Example], responses: Sequence[str]) -> list[dict[str, Any]]:
        verdicts = self.fn(examples, responses)
        return [{"id": e.id, "response": r, **v.to_dict()} for e, r, v in zip(examples, responses, verdicts)]
