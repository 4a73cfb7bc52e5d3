"""`s3ft ARGS` in the test process (s3ft.cli.main): for reruns that must find everything done. A
fresh interpreter costs seconds of CPU importing torch, transformers, TRL and peft; this does not.
Shared by the test files that rerun a pipeline (docs/contributing.md, "Test cost")."""
from __future__ import annotations


def cli_here(capsys, *argv: str) -> tuple[int, str, str]:
    """Run `s3ft ARGV` in this process: (exit status, stdout, stderr) of that call alone."""
    from s3ft.cli import main

    capsys.readouterr()  # drop what earlier steps printed
    rc = main([str(a) for a in argv])
    out = capsys.readouterr()
    return rc, out.out, out.err
