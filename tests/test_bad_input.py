"""Every malformed input in docs/bad-input.md is refused by the real CLI before any work, with
exit code 2, a one-line message naming where the problem is, and no traceback."""
import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_bad_input_table():
    spec = importlib.util.spec_from_file_location("bad_input_table", ROOT / "scripts" / "bad_input_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rows = mod.build_table()
    assert len(rows) >= 30
    for kind, desc, code, err in rows:
        assert code == 2, (kind, desc, code, err)
        assert err.startswith("s3ft: error: "), (kind, desc, err)
        assert "Traceback" not in err
        assert "\n" not in err and len(err) < 1000, (desc, err)  # one line, even for a billion laughs
        if kind == "data file" and desc not in ("file missing", "empty file"):
            assert ".jsonl line " in err, (desc, err)
        if kind == "recipe" and desc not in ("recipe file missing", "recipe is a FIFO", "recipe is a symbolic link loop"):
            assert ".yaml line " in err, (desc, err)
        if kind == "data path":
            assert "(data_files['train']" in err, (desc, err)
        if kind == "dataset":
            assert "dataset " in err and "cannot load it" in err, (desc, err)  # names the dataset
        if kind == "output_dir":
            assert "/tmp/x/" in err, (desc, err)  # names the folder
    kinds = {kind for kind, *_ in rows}
    assert {"recipe", "command line", "model", "judge", "data file", "data path", "predictions", "output_dir"} <= kinds
