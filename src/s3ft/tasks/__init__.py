"""Built-in tasks and user JSONL tasks.

A task is data plus three choices: how to load its splits as `Example`s, which judge decides
correctness, and how long answers may be. `get_task(name, ...)` returns a `Task`; each
built-in task lives in its own module (`squad.py`, `squad_sentence.py`, `gsm8k.py`, `mbpp.py`, `nq_open.py`,
`jsonl.py` for user data)."""
from __future__ import annotations

from typing import Any

from s3ft.tasks.base import Task

BUILTIN_TASKS = ("squad", "squad_sentence", "gsm8k", "mbpp", "nq_open", "jsonl")
__all__ = ["BUILTIN_TASKS", "Task", "get_task"]


def get_task(name: str, **options: Any) -> Task:
    """The task called `name`. Options are task-specific (the `jsonl` task takes its file
    paths and field names)."""
    if name == "squad":
        from s3ft.tasks import squad

        return squad.task(**options)
    if name == "squad_sentence":
        from s3ft.tasks import squad_sentence

        return squad_sentence.task(**options)
    if name == "gsm8k":
        from s3ft.tasks import gsm8k

        return gsm8k.task(**options)
    if name == "mbpp":
        from s3ft.tasks import mbpp

        return mbpp.task(**options)
    if name == "nq_open":
        from s3ft.tasks import nq_open

        return nq_open.task(**options)
    if name == "jsonl":
        from s3ft.tasks import jsonl

        return jsonl.task(**options)
    raise ValueError(f"unknown task {name!r}; built-in tasks: {', '.join(BUILTIN_TASKS)}")
