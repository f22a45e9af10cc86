"""Flag parsing and validation: defaults, the original flags, and a clear error per bad value."""

import json

import pytest

from capc.errors import CapcError, ConfigError
from capc.launcher.errors import FlagError
from capc.launcher.flags import build_parser, config_field_names, parse_config, validate


def cfg(*args):
    return validate(build_parser().parse_args(list(args)))


def test_defaults_are_valid_and_complete():
    c = cfg()
    assert c.n_parties == 3 and c.n_queries == 5 and c.num_classes == 10
    assert c.ignore_parties is False and c.cpu is False and c.tmux is None
    assert c.hiding_bits == 40 and c.round_exp == 3 and c.max_logit == 16.0 and c.start_port == 0
    assert c.ports() == []
    assert set(c.to_json()) == set(config_field_names())
    json.dumps(c.to_json())


def test_original_command_line(tmp_path):
    params = tmp_path / "10.json"
    params.write_text(json.dumps({"scheme_name": "HE_SEAL", "poly_modulus_degree": 8192}))
    c = cfg("--n_parties=3", "--ignore_parties", f"--encryption_params={params}",
            "--start_batch", "5", "--n_queries", "2", "--rstar_exp", "30", "--round_exp", "8",
            "--dp_noise_scale", "4", "--start_port", "37000", "--cpu", "--debug")
    assert c.n_parties == 3 and c.ignore_parties and c.encryption_params == params.resolve()
    assert c.hiding_bits == 30 and c.fraction_bits == 8 and c.sigma_gnmax == 4.0
    assert c.ports() == list(range(37000, 37000 + c.n_parties + 2)) and c.cpu and c.debug  # one per party


def test_ignore_parties_can_be_switched_off():
    assert cfg("--ignore_parties").ignore_parties is True
    assert cfg("--ignore_parties", "--no-ignore_parties").ignore_parties is False


def test_hiding_bits_alias_and_tmux_switch():
    assert cfg("--hiding_bits", "41").hiding_bits == 41
    assert cfg("--tmux").tmux is True and cfg("--no-tmux").tmux is False
    assert cfg("--sigma-threshold", "3", "--threshold", "2").sigma_threshold == 3.0


@pytest.mark.parametrize("args, flag", [
    (["--n_parties", "0"], "--n_parties"),
    (["--n_queries", "0"], "--n_queries"),
    (["--start_batch", "-1"], "--start_batch"),
    (["--batch_size", "0"], "--batch_size"),
    (["--num_classes", "1"], "--num_classes"),
    (["--qp_id", "-2"], "--qp_id"),
    (["--rstar_exp", "0"], "--rstar_exp/--hiding_bits"),
    (["--rstar_exp", "60", "--cpu"], "--rstar_exp/--hiding_bits"),  # not in the 64-bit ring
    (["--rstar_exp", "42"], "--rstar_exp/--hiding_bits"),   # beyond CKKS decoding precision
    (["--round_exp", "41"], "--round_exp"),
    (["--max_logit", "0"], "--max_logit"),
    (["--max_logit", "nan"], "--max_logit"),
    (["--dp_noise_scale", "0"], "--dp_noise_scale"),  # without --budget_eps inf
    (["--budget_eps", "nan"], "--budget_eps"),
    (["--dp_noise_scale", "-1"], "--dp_noise_scale"),
    (["--threshold", "5"], "--sigma_threshold"),
    (["--sigma_threshold", "-1"], "--sigma_threshold"),
    (["--vote_scale_exp", "21"], "--vote_scale_exp"),
    (["--budget_eps", "0"], "--budget_eps"),
    (["--delta", "1"], "--delta"),
    (["--delta", "0"], "--delta"),
    (["--timeout", "0"], "--timeout"),
    (["--session", "a.b"], "--session"),
    (["--host", "bad host"], "--host"),
    (["--start_port", "80"], "--start_port"),
    (["--start_port", "70000"], "--start_port"),
    (["--start_port", "65532", "--n_parties", "3"], "--start_port"),
    (["--model_type", "a/b"], "--model_type"),
    (["--encryption_params", "/nonexistent/capc/10.json"], "--encryption_params"),
    (["--checkpoint_dir", "/nonexistent/capc/models"], "--checkpoint_dir"),
    (["--log_timing_file", "/nonexistent/capc/t.log"], "--log_timing_file"),
])
def test_bad_values_name_the_flag(args, flag):
    with pytest.raises(FlagError) as info:
        cfg(*args)
    assert str(info.value).startswith(flag + ":")
    assert isinstance(info.value, ConfigError) and isinstance(info.value, CapcError)


def test_encryption_params_must_be_json_object(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(FlagError, match="--encryption_params: .*not valid JSON"):
        cfg("--encryption_params", str(bad))
    bad.write_text("[1, 2]")
    with pytest.raises(FlagError, match="JSON object"):
        cfg("--encryption_params", str(bad))
    with pytest.raises(FlagError, match="not a regular file"):
        cfg("--encryption_params", str(tmp_path))


def test_checkpoint_dir_counts_models_unless_ignored(tmp_path):
    with pytest.raises(FlagError, match="--checkpoint_dir: .*no model files"):
        cfg("--checkpoint_dir", str(tmp_path), "--ignore_parties")
    for name in ("m0.keras", "m1.keras", "m1.pb", "card.json"):
        (tmp_path / name).write_text("x")
    assert cfg("--checkpoint_dir", str(tmp_path), "--n_parties", "1").checkpoint_dir == tmp_path.resolve()
    with pytest.raises(FlagError, match="--checkpoint_dir: .*holds 2 model.*--n_parties=2 needs 3"):
        cfg("--checkpoint_dir", str(tmp_path), "--n_parties", "2")
    assert cfg("--checkpoint_dir", str(tmp_path), "--n_parties", "2", "--ignore_parties")


def test_run_dir_must_be_new_or_empty(tmp_path):
    assert cfg("--run_dir", str(tmp_path)).run_dir == tmp_path.resolve()
    (tmp_path / "x").write_text("x")
    with pytest.raises(FlagError, match="--run_dir: .*not empty"):
        cfg("--run_dir", str(tmp_path))


def test_models_dir(tmp_path):
    assert cfg("--models_dir", str(tmp_path / "new")).models_dir == (tmp_path / "new").resolve()
    with pytest.raises(FlagError, match="--models_dir"):
        cfg("--models_dir", str(tmp_path / "no" / "such"))


def test_parse_config_exits_with_usage(capsys):
    with pytest.raises(SystemExit) as info:
        parse_config(["--n_parties", "0"])
    assert info.value.code == 2
    assert "--n_parties: must be >= 1" in capsys.readouterr().err


def test_help_explains_capc_differences(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for phrase in ("PLAINTEXT SIMULATION", "statistical hiding bits", "honours it",
                   "batch packing", "real on/off switch", "sigma_G"):
        assert phrase in text


@pytest.mark.parametrize("name", ["frac_bits", "hiding_bits", "logit_bound"])
def test_flags_run_file_he_and_fixedpoint_accept_the_same_range(name, tmp_path):
    """Regression: frac_bits had the limits 0..40 (flags), 0..30 (run file) and 0..62 (fixedpoint)."""
    import capc.protocol_params as pp
    from capc.fixedpoint import encode
    from capc.parties.runconfig import run_config_from_dict

    param = pp.PARAMS[name]
    flag = {"frac_bits": "--round_exp", "hiding_bits": "--rstar_exp", "logit_bound": "--max_logit"}[name]
    lo, hi = param.lo, param.hi
    inside = [lo if not param.lo_open else lo + 0.5, hi if not param.hi_open else hi / 2]
    outside = [lo - 1 if not param.lo_open else lo, hi + 1 if not param.hi_open else hi]
    run = {"run_id": "r", "run_dir": str(tmp_path), "pki_dir": str(tmp_path),
           "parties": [{"name": "qp-0"}, {"name": "ap-1", "model": "m"}, {"name": "pg"}]}
    he = pytest.importorskip("capc.he.params")
    for value in inside + outside:
        v = int(value) if param.type is int else float(value)
        ok = param.problem(v) is None
        assert ok == (value in inside)
        args = [flag, str(v), "--cpu"] + (["--max_logit", "1"] if name != "logit_bound" else ["--rstar_exp", "1"])
        if name == "frac_bits":
            args += ["--rstar_exp", "1"]
        if name == "hiding_bits":
            args += ["--round_exp", "0"]
        flags_ok = _accepts(lambda: cfg(*args))
        file_ok = _accepts(lambda: run_config_from_dict({**run, "protocol": {
            "plaintext": True, "frac_bits": 0 if name == "hiding_bits" else 3, "hiding_bits": 1,
            "logit_bound": 1.0, name: v}}))
        assert flags_ok == file_ok == ok, (name, v)
        if name == "frac_bits":
            assert _accepts(lambda: encode(1.0, v)) == ok
            assert _accepts(lambda: he._check_args("single", 1, 1.0, v)) == ok
        if name == "hiding_bits" and v <= pp.PRECISION_BITS:
            assert _accepts(lambda: he._check_args("single", v, 1.0, 0)) == ok


def _accepts(fn) -> bool:
    from capc.errors import CapcError

    try:
        fn()
    except (CapcError, ValueError):
        return False
    return True


def test_precision_bound_only_with_encryption():
    assert cfg("--rstar_exp", "50", "--cpu").hiding_bits == 50
    with pytest.raises(FlagError, match="exceeds 48"):
        cfg("--rstar_exp", "50")


@pytest.mark.parametrize("model_type", ["cryptonets", "cryptonets-relu", "mlp"])
def test_model_type_accepts_the_three_layouts(model_type):
    assert cfg("--model_type", model_type).model_type == model_type
    assert cfg().model_type == "cryptonets"  # capc's default (the original demo's was cryptonets-relu)


@pytest.mark.parametrize("bad", ["resnet", "relu", "MLP ", "cryptonets_relu2", "a/b", ""])
def test_model_type_refuses_others_naming_the_layouts(bad):
    with pytest.raises(FlagError) as info:
        cfg("--model_type", bad)
    message = str(info.value)
    assert message.startswith("--model_type: must be one of cryptonets, cryptonets-relu, mlp")
    assert repr(bad) in message


def test_bad_model_type_exits_before_anything_starts(capsys, tmp_path):
    run_dir = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        parse_config(["--model_type", "vgg16", "--run_dir", str(run_dir)])
    assert info.value.code == 2
    assert "--model_type: must be one of cryptonets, cryptonets-relu, mlp, got 'vgg16'" in capsys.readouterr().err
    assert not run_dir.exists()


def test_help_names_the_model_types(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "one of cryptonets, cryptonets-relu, mlp" in text and "models/digits-mlp/" in text


@pytest.mark.parametrize("model_type, folder", [("cryptonets", "digits"), ("mlp", "digits-mlp"),
                                                ("cryptonets-relu", "digits-cryptonets-relu")])
def test_model_type_selects_the_run_s_default_models(model_type, folder, monkeypatch):
    """--model_type reaches the run: the parties get the shipped set of that layout."""
    pytest.importorskip("keras")
    from capc.learning.default_models import repo_models_dir
    from capc.parties.orchestrate import _model_files

    monkeypatch.delenv("CAPC_MODELS_DIR", raising=False)
    files = _model_files(cfg("--model_type", model_type, "--n_parties", "3"))
    assert files == [repo_models_dir() / folder / f"party-{i}.keras" for i in range(4)]
