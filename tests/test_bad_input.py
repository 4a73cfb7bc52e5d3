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
        if kind == "data file" and desc not in ("file missing", "empty file"):
            assert ".jsonl line " in err, (desc, err)
        if kind == "recipe" and desc != "recipe file missing":
            assert ".yaml line " in err, (desc, err)
