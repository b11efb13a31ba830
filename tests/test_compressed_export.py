"""Compressed export (compressed-tensors sparse-bitmask / sparse-24-bitmask) beside model/, on tiny models:
the format follows the mask, only the target matrices are compressed, the files shrink, and decompressing
with compressed-tensors gives back the dense export tensor for tensor."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from conftest import TINY, compose_cfg
from safetensors.torch import load_file

from sparsetune.compressed_export import BITMASK, BITMASK_24, choose_format, roundtrip, skip_reason
from sparsetune.errors import ConfigError
from sparsetune.methods.base import model_targets
from sparsetune.run import run
from sparsetune.run_dir import RunDirError
from sparsetune.validate import check, checked_method


def safetensors_bytes(d):
    return sum(f.stat().st_size for f in d.glob("*.safetensors"))


def decompressed(d):
    """What compressed-tensors itself reads back from the dir (its config.json names the compressor)."""
    from compressed_tensors import ModelCompressor

    return dict(ModelCompressor.from_pretrained(str(d)).sparsity_compressor.decompress(str(d)))


def target_names(cfg):
    from sparsetune import models

    model, _, _ = models.load(cfg)
    return sorted(model_targets(model, cfg))


@pytest.fixture(scope="module")
def sparse_run(tmp_path_factory):
    """One 90 %-sparse magnitude run on tiny-bert, shared by the tests that only read it."""
    cfg = compose_cfg([*TINY, "method=magnitude", "method.sparsity=0.9"])
    run_dir = tmp_path_factory.mktemp("magnitude90")
    return cfg, run_dir, run(cfg, run_dir)


def test_90_percent_magnitude_run_exports_a_bitmask_model_that_decompresses_to_the_dense_export(sparse_run):
    cfg, tmp_path, res = sparse_run
    rec, out = res["export"]["compressed"], tmp_path / "model-compressed"
    assert rec["dir"] == str(out) and out.is_dir() and not (tmp_path / ".model-compressed.partial").exists()
    assert rec["format"] == BITMASK
    # sizes are the files on disk; the target matrices at 90 % zeros take well under a third of their dense bytes
    assert rec["bytes"] == safetensors_bytes(out) and rec["dense_bytes"] == safetensors_bytes(tmp_path / "model")
    assert rec["ratio"] == pytest.approx(rec["bytes"] / rec["dense_bytes"]) and rec["ratio"] < 0.75
    assert rec["target_ratio"] == pytest.approx(rec["target_bytes"] / rec["target_dense_bytes"])
    assert rec["target_ratio"] <= 0.35, rec["target_ratio"]

    # exactly the method's target matrices are compressed; every other tensor is stored as it was
    targets = target_names(cfg)
    assert rec["targets"] == targets
    stored, dense = load_file(str(out / "model.safetensors")), load_file(str(tmp_path / "model" / "model.safetensors"))
    for name in targets:
        assert f"{name}.weight" not in stored
        assert {f"{name}.{p}" for p in ("compressed", "bitmask", "shape", "row_offsets")} <= stored.keys()
    plain = {k for k in dense if k.removesuffix(".weight") not in targets}
    assert all(torch.equal(stored[k], dense[k]) for k in plain)

    # the metadata compressed-tensors writes (and reads back) in config.json
    qc = json.loads((out / "config.json").read_text())["quantization_config"]
    assert qc["quant_method"] == "compressed-tensors"
    sc = qc["sparsity_config"]
    assert sc["format"] == BITMASK and sc["sparsity_structure"] == "unstructured" and sc["targets"] == targets
    assert (out / "tokenizer_config.json").exists()

    # round trip, checked here again with the library: every tensor of the dense export, equal
    assert rec["roundtrip_bit_identical"] is True and rec["roundtrip_mismatch"] == []
    assert rec["roundtrip_zero_sign_differences"] == 0
    back = decompressed(out)
    assert back.keys() == dense.keys()
    for k in dense:  # bit for bit: the zeros' signs too (torch.equal alone calls -0.0 equal to 0.0)
        assert back[k].dtype == dense[k].dtype and torch.equal(back[k], dense[k]), k
        assert torch.equal(torch.signbit(back[k]), torch.signbit(dense[k])), k


def test_2_4_spp_run_uses_the_2_4_format(tiny_cfg, tmp_path):
    res = run(tiny_cfg("model=tiny-llama", "method=spp", "salience=magnitude", "method.pattern=2:4",
                       "method.sparsity=null"), tmp_path)
    rec = res["export"]["compressed"]
    assert rec["format"] == BITMASK_24 and rec["roundtrip_bit_identical"] is True
    sc = json.loads((tmp_path / "model-compressed" / "config.json").read_text())["quantization_config"]["sparsity_config"]
    assert sc["format"] == BITMASK_24 and sc["sparsity_structure"] == "2:4"
    # half the values plus one bit per weight: 1/2 + 1/32 of fp32, and the shape
    assert 0.5 < rec["target_ratio"] < 0.55
    dense = load_file(str(tmp_path / "model" / "model.safetensors"))
    back = decompressed(tmp_path / "model-compressed")
    assert all(torch.equal(back[k], dense[k]) for k in dense) and back.keys() == dense.keys()


@pytest.mark.parametrize("method", ["full", "lora"])
def test_dense_methods_skip_it_with_the_reason(tiny_cfg, tmp_path, method):
    res = run(tiny_cfg(f"method={method}"), tmp_path)
    rec = res["export"]["compressed"]
    assert set(rec) == {"skipped"} and f"method={method} exports a dense model" in rec["skipped"]
    assert (tmp_path / "model").is_dir() and not (tmp_path / "model-compressed").exists()


def test_the_switch(tiny_cfg):
    cfg = tiny_cfg("method=magnitude", "export_compressed=false")
    assert skip_reason(cfg, 0.9) == "export_compressed=false"
    assert skip_reason(tiny_cfg("method=magnitude"), 0.9) is None  # auto: on for a sparse method
    assert skip_reason(tiny_cfg("method=magnitude", "export_compressed=true"), 0.9) is None
    assert "dense model" in skip_reason(tiny_cfg("method=full", "export_compressed=true"), 0.0)


def test_without_the_library_auto_skips_and_true_refuses(tiny_cfg, monkeypatch):
    import sparsetune.compressed_export as ce

    real = ce.importlib.util.find_spec
    monkeypatch.setattr(ce.importlib.util, "find_spec", lambda name, *a: None if name == "compressed_tensors" else real(name, *a))
    assert "compressed-tensors is not installed" in skip_reason(tiny_cfg("method=magnitude"), 0.9)
    with pytest.raises(ConfigError, match="export_compressed=true: compressed-tensors is not installed .*pip install"):
        skip_reason(tiny_cfg("method=magnitude", "export_compressed=true"), 0.9)
    with pytest.raises(ConfigError, match="export_compressed=true: compressed-tensors is not installed"):
        checked_method(tiny_cfg("method=magnitude", "export_compressed=true"))  # before training, not after it


@pytest.mark.parametrize("value", ["maybe", "2"])
def test_a_bad_export_compressed_value_is_refused_with_the_choices(tiny_cfg, value):
    with pytest.raises(ConfigError, match=r"export_compressed=.* is not one of \['auto', True, False\]"):
        check(tiny_cfg(f"export_compressed={value}"))


def test_format_choice_follows_the_declared_pattern_and_the_actual_mask(tiny_cfg):
    two_four = torch.tensor([[1.0, 0, 2, 0, 0, 0, 0, 3]])
    three_of_four = torch.tensor([[1.0, 4, 2, 0, 0, 0, 0, 3]])
    cfg = tiny_cfg("method=spp", "method.pattern=2:4", "method.sparsity=null")
    assert choose_format(cfg, {"a": two_four}) == (BITMASK_24, None)
    fmt, note = choose_format(cfg, {"a": two_four, "b": three_of_four})
    assert fmt == BITMASK and "1 target(s) are not 2:4 (e.g. b)" in note
    # an unstructured mask that happens to be 2:4 keeps bitmask (fewer bytes at high sparsity)
    assert choose_format(tiny_cfg("method=magnitude"), {"a": two_four}) == (BITMASK, None)


def test_roundtrip_check_catches_a_changed_value(sparse_run, tmp_path):
    from safetensors.torch import save_file

    _, run_dir, _ = sparse_run
    out = tmp_path / "model-compressed"
    shutil.copytree(run_dir / "model-compressed", out)
    stored = load_file(str(out / "model.safetensors"))
    name = next(k for k in stored if k.endswith(".compressed"))
    stored[name][0] += 1.0
    save_file(stored, str(out / "model.safetensors"), metadata={"format": "pt"})
    rt = roundtrip(out, run_dir / "model")
    assert rt["roundtrip_bit_identical"] is False
    assert rt["roundtrip_mismatch"][0].startswith(name.removesuffix(".compressed") + ".weight")


def test_a_compressed_dir_left_by_an_earlier_attempt_is_never_kept(tiny_cfg, tmp_path):
    """An earlier attempt's model-compressed/ would not match this run's model/: it makes the run dir occupied,
    and overwrite=true removes it, also when the new run writes no compressed export itself."""
    (tmp_path / "model-compressed").mkdir()
    (tmp_path / "model-compressed" / "model.safetensors").write_bytes(b"stale")
    args = ("method=magnitude", "method.sparsity=0.5", "mask_schedule=constant", "train.max_steps=0", "export_compressed=false")
    with pytest.raises(RunDirError, match="model-compressed"):
        run(tiny_cfg(*args), tmp_path)
    res = run(tiny_cfg(*args, "overwrite=true"), tmp_path)
    assert res["export"]["compressed"] == {"skipped": "export_compressed=false"}
    assert "model-compressed" in res["overwrote"]["removed"]
    assert (tmp_path / "model").is_dir() and not (tmp_path / "model-compressed").exists()
