"""lm-evaluation-harness task definitions for the general-ability benchmarks (see s3ft.general).

The `s3ft_*.yaml` files here are templates: `include` is relative to the installed
`lm_eval/tasks` folder and `data_files` to the folder s3ft.general writes the benchmark rows into;
both are made absolute at run time and the finished YAMLs are written to a temporary folder.
"""
from pathlib import Path

TASKS_DIR = Path(__file__).resolve().parent
