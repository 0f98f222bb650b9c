"""`vitdeploy models` lists data (models.spec.LISTED): at once, without torch, and true to the built models."""

from __future__ import annotations

import pytest
from test_no_torch import RUN_CLI, _python
from vitdeploy.models import create_model, get_spec, list_models, model_params
from vitdeploy.models.layers import count_params
from vitdeploy.models.registry import listed


def test_listing_data_covers_every_registered_variant():
    # the same variants (registration order follows whichever family a test imported first)
    assert sorted(listed()) == sorted(list_models())
    assert sorted(listed(include_tiny=False)) == sorted(list_models(include_tiny=False))
    for name, row in listed().items():
        spec = get_spec(name)  # registration already refuses a row that differs from its spec
        assert (row.family, row.input_size, row.paper_top1, row.macs_g, row.tiny) == (
            spec.family, spec.input_size, spec.paper_top1, spec.macs_g, spec.tiny)
        if spec.official_params is not None:
            assert row.params == spec.official_params, name


def test_models_lists_every_variant_without_torch(monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    proc = _python(RUN_CLI, "models")
    assert proc.returncode == 0, proc.stderr
    lines = {line.split()[0]: line.split() for line in proc.stdout.splitlines() if line.strip()}
    assert "…" not in proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80
    for name, row in listed().items():
        top1 = "-" if row.paper_top1 is None else f"{row.paper_top1:.1f}"
        macs = "-" if row.macs_g is None else f"{row.macs_g:.1f}"
        assert lines.get(name) == [name, row.family, f"{row.params / 1e6:.2f}", str(row.px), top1, macs], name


@pytest.mark.parametrize("name", list(listed()))
def test_listed_params_match_the_model(name):
    assert model_params(name) == listed()[name].params  # built on the meta device: every variant, fast


@pytest.mark.parametrize("name", [n for n, r in listed().items() if r.tiny])
def test_listed_params_match_a_real_build(name):
    assert count_params(create_model(name)) == listed()[name].params
