"""Command-line flags of ``run_experiment.py`` and their validation into an :class:`ExperimentConfig`.

The flag names are those of the original CaPC launcher (``run_experiment.py`` / ``run_protocol.py``)
so existing command lines keep working; where the original's meaning was unsound, capc's meaning is
stated in ``--help`` together with the reason. capc's own flags are listed after them.
"""

from __future__ import annotations

import argparse
import json
import math
import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

from capc.launcher.errors import FlagError

#: Datasets the learning side knows; ``digits`` ships with scikit-learn, so it works offline.
DATASETS = ("digits", "digits28", "mnist")
#: File endings counted as one model each when ``--checkpoint_dir`` is checked against ``--n_parties``.
MODEL_SUFFIXES = (".keras", ".h5", ".pb")
#: Largest s + ceil(log2 B) + f that float64 CKKS decoding keeps within the +-1 share guarantee
#: (the same bound as ``capc.he.params.PRECISION_BITS``, repeated so flag parsing stays light).
CKKS_PRECISION_BITS = 48
#: Ports a run reserves from ``--start_port``: an HE/2PC listening port pair per AP and for the PG.
PORTS_PER_PARTY = 2
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
_MODEL_TYPE_RE = re.compile(r"^[A-Za-z0-9_.+-]+$")
_HOST_RE = re.compile(r"^[A-Za-z0-9.:_\[\]-]+$")


@dataclass(frozen=True)
class ExperimentConfig:
    """Every flag of a run after defaults and validation (see ``build_parser`` for meanings).

    ``tmux`` is ``None`` when neither ``--tmux`` nor ``--no-tmux`` was given (auto: use tmux only
    when already inside it). Paths are absolute or ``None``.
    """

    n_parties: int
    ignore_parties: bool
    encryption_params: Path | None
    start_batch: int
    n_queries: int
    batch_size: int
    num_classes: int
    hiding_bits: int
    round_exp: int
    max_logit: float
    dp_noise_scale: float
    seed: int
    session: str
    start_port: int
    qp_id: int
    checkpoint_dir: Path | None
    dataset_name: str
    model_type: str
    log_timing_file: Path | None
    debug: bool
    cpu: bool
    sigma_threshold: float
    threshold: float
    vote_scale_exp: int
    budget_eps: float
    delta: float
    run_dir: Path | None
    tmux: bool | None
    host: str
    timeout: float
    models_dir: Path | None
    retrain: bool = False

    @property
    def sigma_gnmax(self) -> float:
        """sigma_G of Confident-GNMax, in votes (the original's ``--dp_noise_scale``)."""
        return self.dp_noise_scale

    @property
    def fraction_bits(self) -> int:
        """Fixed-point fraction bits f: logits are encoded as round(2^f * z) (``--round_exp``)."""
        return self.round_exp

    def ports(self) -> list[int]:
        """The fixed ports reserved for this run, or ``[]`` when ``--start_port 0`` (OS-chosen)."""
        if self.start_port == 0:
            return []
        count = PORTS_PER_PARTY * (self.n_parties + 1)
        return list(range(self.start_port, self.start_port + count))

    def to_json(self) -> dict[str, Any]:
        """The configuration as JSON-ready values (paths as strings)."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            out[key] = str(value) if isinstance(value, Path) else value
        return out


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``run_experiment.py`` (original flags first, then capc's own)."""
    p = argparse.ArgumentParser(
        prog="run_experiment.py",
        description=(
            "Run CaPC between a querying party (QP), N answering parties (APs) and a privacy "
            "guardian (PG), as separate processes (tmux panes inside tmux or with --tmux, else "
            "subprocesses with per-party logs). Output goes to a per-run directory."
        ),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    orig = p.add_argument_group("original CaPC flags")
    orig.add_argument("--n_parties", type=int, default=3, help="number of answering parties (APs); capc default 3 (the original's was 1)")
    orig.add_argument(
        "--ignore_parties", action=argparse.BooleanOptionalAction, default=False,
        help="skip the check that --checkpoint_dir holds a model per party (models are then "
             "reused). capc: a real "
             "on/off switch (the original's store_true with default True could not be turned off)",
    )
    orig.add_argument(
        "--encryption_params", type=str, default=None,
        help="CKKS parameter file (JSON, e.g. config/10.json); default: capc's built-in default",
    )
    orig.add_argument("--start_batch", type=int, default=0,
                      help="index of the first query in the dataset's query pool")
    orig.add_argument("--n_queries", type=int, default=5, help="number of queries; capc default 5 (the original's was 1)")
    orig.add_argument(
        "--batch_size", type=int, default=1,
        help="queries per HE ciphertext; capc: values > 1 use CKKS batch packing (the original "
             "rejected them)",
    )
    orig.add_argument("--num_classes", type=int, default=10, help="number of classes (logit length)")
    orig.add_argument(
        "--rstar_exp", "--hiding_bits", dest="hiding_bits", type=int, default=40,
        help="capc: statistical hiding bits s of the AP's mask r_j (uniform over a range 2^s times "
             "wider than the logit bound, so it hides z_j up to 2^-s statistical distance). The "
             "original's r* = max_logit +- 2^rstar_exp was a weak real-valued mask",
    )
    orig.add_argument(
        "--round_exp", type=int, default=3,
        help="fixed-point fraction bits f: logits become round(2^f z) in Z_2^64. capc honours it "
             "and rounds (the original ignored it and truncated)",
    )
    orig.add_argument("--max_logit", type=float, default=16.0,
                      help="public bound B on |logit|; the mask range is 2^s * B. With encryption, "
                           f"s + ceil(log2 B) + f must be <= {CKKS_PRECISION_BITS} (float64 CKKS "
                           "decoding)")
    orig.add_argument(
        "--dp_noise_scale", type=float, default=2.0,
        help="sigma_G of (Confident-)GNMax in votes, with privacy accounting. capc: discrete "
             "Gaussian N_Z(0, sigma_G^2) added inside the 2PC (the original added sigma=0.1 with "
             "no accounting)",
    )
    orig.add_argument(
        "--seed", type=int, default=2,
        help="seed of the non-cryptographic randomness (query choice, training). Masks, keys and "
             "DP noise always come from the OS's secure generator",
    )
    orig.add_argument("--session", type=str, default="capc", help="tmux session name")
    orig.add_argument(
        "--start_port", type=int, default=0,
        help=f"first of {PORTS_PER_PARTY}*(n_parties+1) consecutive ports the parties listen on; "
             "capc default 0 = each party binds a free port chosen by the OS and reports it to "
             "the launcher (the original's fixed ports collided between runs)",
    )
    orig.add_argument("--qp_id", type=int, default=0,
                      help="querying party id; the PG keeps one privacy budget per QP id")
    orig.add_argument(
        "--checkpoint_dir", type=str, default=None,
        help="directory of the parties' private models (*.keras, *.h5, *.pb): the QP's own plus "
             "one per AP; default: capc's default models (trained on first use)",
    )
    orig.add_argument("--dataset_name", type=str, default="digits", choices=DATASETS,
                      help="dataset; digits ships with scikit-learn and needs no download")
    orig.add_argument("--model_type", type=str, default="cryptonets",
                      help="architecture of the default models (HE needs polynomial activations)")
    orig.add_argument(
        "--log_timing_file", type=str, default=None,
        help="also append the per-step timing records (JSON lines) to this file; they are always "
             "written to <run_dir>/timing.jsonl",
    )
    orig.add_argument(
        "--debug", action="store_true",
        help="keep the tmux window after the run for inspection, and ask the parties for verbose "
             "logs. capc: party processes are still always stopped at the end (the original "
             "left them running)",
    )
    orig.add_argument(
        "--cpu", action="store_true",
        help="PLAINTEXT SIMULATION: no encryption and no garbled circuits; same votes, noise and "
             "accounting, for testing only. Results are labelled as such",
    )
    own = p.add_argument_group("capc flags")
    own.add_argument("--sigma_threshold", "--sigma-threshold", dest="sigma_threshold", type=float,
                     default=0.0, help="sigma_T of the Confident-GNMax threshold test, in votes")
    own.add_argument("--threshold", type=float, default=0.0,
                     help="threshold T in votes; T=0 with sigma_T=0 is plain GNMax")
    own.add_argument("--vote_scale_exp", "--vote-scale-exp", dest="vote_scale_exp", type=int,
                     default=4, help="vote scale exponent g: votes and noise are scaled by 2^g")
    own.add_argument("--budget_eps", "--budget-eps", dest="budget_eps", type=float, default=10.0,
                     help="privacy budget epsilon per querying party")
    own.add_argument("--delta", type=float, default=1e-5, help="privacy parameter delta")
    own.add_argument("--run_dir", "--run-dir", dest="run_dir", type=str, default=None,
                     help="run directory (default runs/<timestamp>-<id>); must be new or empty")
    own.add_argument("--tmux", action=argparse.BooleanOptionalAction, default=None,
                     help="show parties in tmux panes (default: only when already inside tmux)")
    own.add_argument("--host", type=str, default="127.0.0.1",
                     help="address the parties listen on and connect to")
    own.add_argument("--timeout", type=float, default=600.0,
                     help="deadline in seconds for each wait (parties ready, each step done)")
    own.add_argument("--retrain", action="store_true",
                     help="step 4: afterwards the QP retrains its model from scratch on its own data plus "
                          "the labels it obtained, and the accuracy before/after is reported")
    own.add_argument("--models_dir", "--models-dir", dest="models_dir", type=str, default=None,
                     help="where default models are stored and trained on first use "
                          "(created if missing; default: capc's models directory)")
    return p


def _need(cond: bool, flag: str, message: str) -> None:
    if not cond:
        raise FlagError(flag, message)


def _finite(value: float, flag: str) -> None:
    _need(math.isfinite(value), flag, f"must be a finite number, got {value!r}")


def _existing_file(raw: str | None, flag: str) -> Path | None:
    if raw is None:
        return None
    path = Path(raw).expanduser().resolve()
    _need(path.exists(), flag, f"file {raw!r} does not exist")
    _need(path.is_file(), flag, f"{raw!r} is not a regular file")
    return path


def validate(ns: argparse.Namespace) -> ExperimentConfig:
    """Check every value of a parsed namespace; raise :class:`FlagError` naming the bad flag."""
    _need(ns.n_parties >= 1, "--n_parties", f"must be >= 1, got {ns.n_parties}")
    _need(ns.n_queries >= 1, "--n_queries", f"must be >= 1, got {ns.n_queries}")
    _need(ns.start_batch >= 0, "--start_batch", f"must be >= 0, got {ns.start_batch}")
    _need(ns.batch_size >= 1, "--batch_size", f"must be >= 1, got {ns.batch_size}")
    _need(ns.num_classes >= 2, "--num_classes", f"must be >= 2, got {ns.num_classes}")
    _need(ns.qp_id >= 0, "--qp_id", f"must be >= 0, got {ns.qp_id}")
    _need(1 <= ns.hiding_bits <= 62, "--rstar_exp/--hiding_bits",
          f"must be in 1..62, got {ns.hiding_bits}")
    _need(0 <= ns.round_exp <= 40, "--round_exp", f"must be in 0..40, got {ns.round_exp}")
    _finite(ns.max_logit, "--max_logit")
    _need(ns.max_logit > 0, "--max_logit", f"must be > 0, got {ns.max_logit}")
    # Shares are round(2^f (z - r)) and round(2^f r) with |r| <= 2^s B: both must fit the signed
    # 64-bit ring, i.e. 2^f * B * (2^s + 1) < 2^63.
    bits = ns.round_exp + math.log2(ns.max_logit) + math.log2(2.0 ** ns.hiding_bits + 1)
    _need(bits < 63, "--rstar_exp/--hiding_bits",
          f"2^round_exp * max_logit * (2^hiding_bits + 1) = 2^{bits:.1f} does not fit the signed "
          f"64-bit ring (needs < 2^63); lower --rstar_exp, --round_exp or --max_logit")
    precision = ns.hiding_bits + max(0, math.ceil(math.log2(ns.max_logit))) + ns.round_exp
    _need(ns.cpu or precision <= CKKS_PRECISION_BITS, "--rstar_exp/--hiding_bits",
          f"hiding bits ({ns.hiding_bits}) + ceil(log2 max_logit) + round_exp ({ns.round_exp}) = "
          f"{precision} exceeds {CKKS_PRECISION_BITS}: CKKS decodes to float64, so the masked "
          f"logits would lose the bits the shares need; lower --rstar_exp, --max_logit or "
          f"--round_exp")
    for flag, value in (("--dp_noise_scale", ns.dp_noise_scale),
                        ("--sigma_threshold", ns.sigma_threshold), ("--threshold", ns.threshold)):
        _finite(value, flag)
        _need(value >= 0, flag, f"must be >= 0, got {value}")
    # Noiseless settings cost infinite epsilon: the PG's ledger would refuse every query under a
    # finite budget, so they are accepted only together with an explicit --budget_eps inf (tests
    # and debugging: the label is then the exact plurality vote, with no privacy at all).
    noiseless = ns.dp_noise_scale == 0 or (ns.threshold > 0 and ns.sigma_threshold == 0)
    _need(not noiseless or math.isinf(ns.budget_eps), "--dp_noise_scale" if ns.dp_noise_scale == 0
          else "--sigma_threshold",
          "is 0, which gives no differential privacy (infinite epsilon); pass --budget_eps inf to "
          "run without privacy on purpose")
    _need(0 <= ns.vote_scale_exp <= 20, "--vote_scale_exp",
          f"must be in 0..20, got {ns.vote_scale_exp}")
    _need(not math.isnan(ns.budget_eps) and ns.budget_eps > 0, "--budget_eps",
          f"must be > 0 (inf: no limit, charges still recorded), got {ns.budget_eps}")
    _need(0 < ns.delta < 1, "--delta", f"must be in (0, 1), got {ns.delta}")
    _finite(ns.timeout, "--timeout")
    _need(ns.timeout > 0, "--timeout", f"must be > 0 seconds, got {ns.timeout}")
    _need(bool(_NAME_RE.match(ns.session)), "--session",
          f"must be letters, digits, '_' or '-' (tmux reserves '.' and ':'), got {ns.session!r}")
    _need(bool(_MODEL_TYPE_RE.match(ns.model_type)), "--model_type",
          f"must be a plain name, got {ns.model_type!r}")
    _need(bool(_HOST_RE.match(ns.host)), "--host", f"is not a host name or address: {ns.host!r}")
    # Fixed ports: all of them must be unprivileged and below 65536.
    if ns.start_port != 0:
        last = ns.start_port + PORTS_PER_PARTY * (ns.n_parties + 1) - 1
        _need(1024 <= ns.start_port <= 65535, "--start_port",
              f"must be 0 (OS-chosen) or in 1024..65535, got {ns.start_port}")
        _need(last <= 65535, "--start_port",
              f"{ns.start_port} leaves no room for {PORTS_PER_PARTY * (ns.n_parties + 1)} ports "
              f"for {ns.n_parties} APs and the PG (last would be {last})")

    enc = _existing_file(ns.encryption_params, "--encryption_params")
    if enc is not None:
        try:
            parsed = json.loads(enc.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise FlagError("--encryption_params", f"{ns.encryption_params!r} is not valid JSON: "
                                                   f"{exc}") from None
        _need(isinstance(parsed, dict), "--encryption_params",
              f"{ns.encryption_params!r} must hold a JSON object")

    ckpt = None
    if ns.checkpoint_dir is not None:
        ckpt = Path(ns.checkpoint_dir).expanduser().resolve()
        _need(ckpt.is_dir(), "--checkpoint_dir", f"{ns.checkpoint_dir!r} is not a directory")
        # One model per party (the QP's own plus one per AP); a .keras and a .pb with the same
        # stem are one model in two formats.
        models = {m.stem for m in ckpt.iterdir() if m.suffix in MODEL_SUFFIXES}
        _need(bool(models), "--checkpoint_dir",
              f"{ns.checkpoint_dir!r} holds no model files ({', '.join(MODEL_SUFFIXES)})")
        _need(ns.ignore_parties or len(models) >= ns.n_parties + 1, "--checkpoint_dir",
              f"{ns.checkpoint_dir!r} holds {len(models)} model(s) but --n_parties="
              f"{ns.n_parties} needs {ns.n_parties + 1} (one per AP and the QP's own); pass "
              f"--ignore_parties to reuse models (the votes then agree)")

    timing = None
    if ns.log_timing_file is not None:
        timing = Path(ns.log_timing_file).expanduser().resolve()
        _need(timing.parent.is_dir(), "--log_timing_file",
              f"directory {str(timing.parent)!r} does not exist")
        _need(not timing.is_dir(), "--log_timing_file", f"{ns.log_timing_file!r} is a directory")

    run_dir = None
    if ns.run_dir is not None:
        run_dir = Path(ns.run_dir).expanduser().resolve()
        if run_dir.exists():
            _need(run_dir.is_dir(), "--run_dir", f"{ns.run_dir!r} exists and is not a directory")
            _need(not any(run_dir.iterdir()), "--run_dir",
                  f"{ns.run_dir!r} is not empty (each run needs its own directory)")

    models_dir = None
    if ns.models_dir is not None:
        models_dir = Path(ns.models_dir).expanduser().resolve()
        _need(not models_dir.exists() or models_dir.is_dir(), "--models_dir",
              f"{ns.models_dir!r} exists and is not a directory")
        _need(models_dir.exists() or models_dir.parent.is_dir(), "--models_dir",
              f"parent directory of {ns.models_dir!r} does not exist")

    return ExperimentConfig(
        n_parties=ns.n_parties, ignore_parties=ns.ignore_parties, encryption_params=enc,
        start_batch=ns.start_batch, n_queries=ns.n_queries, batch_size=ns.batch_size,
        num_classes=ns.num_classes, hiding_bits=ns.hiding_bits, round_exp=ns.round_exp,
        max_logit=float(ns.max_logit), dp_noise_scale=float(ns.dp_noise_scale), seed=ns.seed,
        session=ns.session, start_port=ns.start_port, qp_id=ns.qp_id, checkpoint_dir=ckpt,
        dataset_name=ns.dataset_name, model_type=ns.model_type, log_timing_file=timing,
        debug=ns.debug, cpu=ns.cpu, sigma_threshold=float(ns.sigma_threshold),
        threshold=float(ns.threshold), vote_scale_exp=ns.vote_scale_exp,
        budget_eps=float(ns.budget_eps), delta=float(ns.delta), run_dir=run_dir, tmux=ns.tmux,
        host=ns.host, timeout=float(ns.timeout), models_dir=models_dir, retrain=bool(ns.retrain),
    )


def parse_config(argv: Sequence[str] | None = None) -> ExperimentConfig:
    """Parse and validate ``argv`` (default ``sys.argv[1:]``).

    Bad values exit like argparse does (status 2, usage plus a message naming the flag).
    """
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return validate(ns)
    except FlagError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


def config_field_names() -> list[str]:
    """Names of all :class:`ExperimentConfig` fields (for params.json consumers and tests)."""
    return [f.name for f in fields(ExperimentConfig)]


def weak_settings(config: ExperimentConfig) -> list[str]:
    """Warnings about legal but weak settings, to print before a run."""
    notes = []
    if config.hiding_bits < 40:
        notes.append(f"--rstar_exp/--hiding_bits={config.hiding_bits} < 40: the logit masks hide "
                     f"only up to statistical distance 2^-{config.hiding_bits}")
    if config.cpu:
        notes.append("--cpu: PLAINTEXT SIMULATION, nothing is encrypted")
    if config.dp_noise_scale == 0 or (config.threshold > 0 and config.sigma_threshold == 0):
        notes.append("NO DIFFERENTIAL PRIVACY: a noise scale is 0, so every answered query costs "
                     "infinite epsilon (allowed only because --budget_eps is inf)")
    elif math.isinf(config.budget_eps):
        notes.append("--budget_eps inf: epsilon is recorded but no budget is enforced")
    return notes
