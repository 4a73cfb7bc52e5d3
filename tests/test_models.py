"""s3ft.models: which dtype `auto` stands for, and loading in it."""
from __future__ import annotations

import pytest
import torch

from s3ft.config import S3FTConfig
from s3ft.models import cpu_has_native_bf16, load_model, resolve_dtype


@pytest.mark.parametrize("forced, want", [("1", "bfloat16"), ("0", "float32")])
def test_auto_on_cpu_follows_native_bf16(monkeypatch, forced, want):
    monkeypatch.setenv("S3FT_CPU_BF16", forced)
    assert cpu_has_native_bf16() is (forced == "1")
    assert resolve_dtype("auto", "cpu") == want
    assert S3FTConfig(device="cpu").resolved_dtype() == want
    for explicit in ("float32", "bfloat16"):  # an explicit dtype is never second-guessed
        assert resolve_dtype(explicit, "cpu") == explicit


def test_detection_without_override(monkeypatch):
    monkeypatch.delenv("S3FT_CPU_BF16", raising=False)
    native = bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    assert cpu_has_native_bf16() is native


def test_unknown_dtype_is_refused():
    with pytest.raises(ValueError, match="dtype must be"):
        resolve_dtype("fp8", "cpu")


@pytest.mark.parametrize("forced, want", [("1", torch.bfloat16), ("0", torch.float32)])
def test_load_model_auto(monkeypatch, tiny_model_dir, forced, want):
    monkeypatch.setenv("S3FT_CPU_BF16", forced)
    model = load_model(str(tiny_model_dir), device="cpu")
    assert next(model.parameters()).dtype == want
    assert not model.training
