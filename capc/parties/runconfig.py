"""The run file (``RUN.json``) every party process reads: who the parties are and how the run is set.

One file describes a whole run so that each process, on this host or another, is started with the same
facts: the run id, the PKI directory (run CA plus one certificate per party), each party's role,
listening address and (for APs and the QP) model file, the CKKS parameter file, and the protocol and
privacy parameters. :func:`load_run_config` validates it and names the offending key on any error.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import capc.protocol_params as pp

from capc.errors import ConfigError
from capc.net.names import PartyNameError, parse_party_name

_RUN_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_QUERY_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
#: Where each party's own files live inside a run directory: ``parties/<name>/``.
PARTY_DIR = "parties"
RUN_FILE = "run.json"


@dataclass(frozen=True)
class PartyEntry:
    """One party of the run."""

    name: str  # qp-<i>, ap-<i> or pg
    host: str = "127.0.0.1"
    port: int = 0  # where the party listens; 0 only where no peer connects to it (in-process runs)
    model: str | None = None  # the AP's own model (or the QP's, for retraining)

    @property
    def role(self) -> str:
        return "pg" if self.name == "pg" else self.name.split("-", 1)[0]


@dataclass(frozen=True)
class ProtocolParams:
    """Numeric parameters of the CaPC protocol (docs/design.md §4.1). The declared ones take their
    defaults and limits from :mod:`capc.protocol_params`, the single declaration each has."""

    num_classes: int = pp.NUM_CLASSES.default
    frac_bits: int = pp.FRAC_BITS.default  # f: logits are shared at scale 2^f (--round_exp)
    hiding_bits: int = pp.HIDING_BITS.default  # s: statistical hiding of the HE output mask (--rstar_exp)
    logit_bound: float = pp.LOGIT_BOUND.default  # B: public bound on |logit| (--max_logit)
    vote_scale_exp: int = pp.VOTE_SCALE_EXP.default  # g: votes are scaled by 2^g before the noise
    sigma_gnmax: float = pp.SIGMA_GNMAX.default  # sigma_G in votes (--dp_noise_scale)
    sigma_threshold: float = pp.SIGMA_THRESHOLD.default  # sigma_T in votes
    threshold: float = pp.THRESHOLD.default  # T in votes; answered iff max votes + noise >= T
    budget_eps: float = pp.BUDGET_EPS.default  # per querying party
    delta: float = pp.DELTA.default
    he_params: str | None = None  # path of a config/*.json file; None = capc's default for the model
    packing: str = "single"  # "single" (one query per ciphertext) or "batch"
    batch_size: int = pp.BATCH_SIZE.default  # queries per encrypted batch when packing is "batch"
    # Step 1a of a batch to one AP after the other instead of all at once: when every AP shares one
    # machine, each AP's batch evaluation already uses all its cores, and running them together only
    # multiplies the peak memory (several GB per AP at N = 16384).
    sequential_batch_aps: bool = False
    plaintext: bool = False  # --cpu: no encryption at all, clearly labelled simulation
    timeout: float = pp.TIMEOUT.default  # seconds any single wait may take


@dataclass(frozen=True)
class RunConfig:
    """Everything a party process needs to know about the run."""

    run_id: str
    run_dir: str
    pki_dir: str
    parties: tuple[PartyEntry, ...]
    protocol: ProtocolParams = field(default_factory=ProtocolParams)
    queries: tuple[int, ...] = ()  # dataset indices the querying party asks about
    dataset: str | None = "digits"  # None in an AP's or the PG's run file
    data_dir: str | None = None
    seed: int = 0
    query_file: str | None = None  # .npz with "x" (and optionally "y"): queries instead of the dataset's pool
    # The querying party's secret (64 hex digits) from which it derives the opaque query ids it sends
    # (:func:`capc.parties.queries.wire_query_id`); only the QP's own run file holds it.
    query_key: str | None = None

    def party(self, name: str) -> PartyEntry:
        """The entry for ``name``; ConfigError if the run has no such party."""
        for p in self.parties:
            if p.name == name:
                return p
        raise ConfigError(f"run {self.run_id}: no party named {name!r} "
                          f"(parties: {', '.join(p.name for p in self.parties)})")

    def by_role(self, role: str) -> list[PartyEntry]:
        return [p for p in self.parties if p.role == role]

    @property
    def answering_parties(self) -> list[PartyEntry]:
        return self.by_role("ap")

    def with_endpoints(self, endpoints: Mapping[str, tuple[str, int]]) -> "RunConfig":
        """A copy with the listed parties' (host, port) replaced (after they bound port 0)."""
        parties = tuple(PartyEntry(p.name, *endpoints.get(p.name, (p.host, p.port)), model=p.model)
                        for p in self.parties)
        return dataclasses.replace(self, parties=parties)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["parties"] = [asdict(p) for p in self.parties]
        d["queries"] = list(self.queries)
        return d


def _req(d: Mapping[str, Any], key: str, where: str) -> Any:
    if key not in d:
        raise ConfigError(f"{where}: missing key '{key}'")
    return d[key]


def run_config_from_dict(d: Mapping[str, Any], where: str = "run file") -> RunConfig:
    """Validate a mapping (parsed JSON) and build a :class:`RunConfig`."""
    if not isinstance(d, Mapping):
        raise ConfigError(f"{where}: expected a JSON object")
    run_id = _req(d, "run_id", where)
    if not isinstance(run_id, str) or not _RUN_ID_RE.match(run_id):
        raise ConfigError(f"{where}: key 'run_id': {run_id!r} is not 1-64 characters of [A-Za-z0-9._-]")
    raw_parties = _req(d, "parties", where)
    if not isinstance(raw_parties, list) or not raw_parties:
        raise ConfigError(f"{where}: key 'parties' must be a non-empty list")
    parties = []
    seen: set[str] = set()
    for i, p in enumerate(raw_parties):
        w = f"{where}: parties[{i}]"
        if not isinstance(p, Mapping):
            raise ConfigError(f"{w}: expected an object")
        unknown = set(p) - {"name", "host", "port", "model"}
        if unknown:
            raise ConfigError(f"{w}: unknown key '{sorted(unknown)[0]}'")
        name = _req(p, "name", w)
        try:
            role, index = parse_party_name(name)
        except PartyNameError:
            role, index = "", None
        if role not in ("qp", "ap", "pg") or (role == "pg" and index is not None):
            raise ConfigError(f"{w}: key 'name': {name!r} is not qp-<i>, ap-<i> or pg")
        if name in seen:
            raise ConfigError(f"{w}: party {name!r} appears twice")
        seen.add(name)
        port = p.get("port", 0)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise ConfigError(f"{w}: key 'port': {port!r} is not a port number 0..65535")
        host = p.get("host", "127.0.0.1")
        if not isinstance(host, str) or not host:
            raise ConfigError(f"{w}: key 'host' must be a non-empty string")
        model = p.get("model")
        if model is not None and not isinstance(model, str):
            raise ConfigError(f"{w}: key 'model' must be a path string")
        parties.append(PartyEntry(name=name, host=host, port=port, model=model))
    roles = [p.role for p in parties]
    if roles.count("pg") != 1:
        raise ConfigError(f"{where}: key 'parties': a run needs exactly one privacy guardian 'pg'")
    if roles.count("qp") < 1 or roles.count("ap") < 1:
        raise ConfigError(f"{where}: key 'parties': a run needs at least one qp-<i> and one ap-<i>")

    proto_raw = d.get("protocol", {})
    if not isinstance(proto_raw, Mapping):
        raise ConfigError(f"{where}: key 'protocol' must be an object")
    defaults = ProtocolParams()
    known = set(asdict(defaults))
    unknown = set(proto_raw) - known
    if unknown:
        raise ConfigError(f"{where}: protocol: unknown key '{sorted(unknown)[0]}'")
    proto = ProtocolParams(**{**asdict(defaults), **proto_raw})
    _check_protocol(proto, f"{where}: protocol")

    queries = d.get("queries", [])
    if not isinstance(queries, list) or not all(isinstance(q, int) and not isinstance(q, bool) and q >= 0
                                                for q in queries):
        raise ConfigError(f"{where}: key 'queries' must be a list of non-negative integers")
    if len(set(queries)) != len(queries):
        raise ConfigError(f"{where}: key 'queries' repeats a query id")
    for key in ("run_dir", "pki_dir"):
        if not isinstance(_req(d, key, where), str):
            raise ConfigError(f"{where}: key '{key}' must be a path string")
    seed = d.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ConfigError(f"{where}: key 'seed' must be an integer")
    query_file = d.get("query_file")
    if query_file is not None and not isinstance(query_file, str):
        raise ConfigError(f"{where}: key 'query_file' must be a path string")
    query_key = d.get("query_key")
    if query_key is not None and not (isinstance(query_key, str) and _QUERY_KEY_RE.match(query_key)):
        raise ConfigError(f"{where}: key 'query_key' must be 64 hexadecimal digits")
    dataset = d.get("dataset", "digits")
    if dataset is not None and not isinstance(dataset, str):
        raise ConfigError(f"{where}: key 'dataset' must be a string or null")
    return RunConfig(run_id=run_id, run_dir=d["run_dir"], pki_dir=d["pki_dir"], parties=tuple(parties),
                     protocol=proto, queries=tuple(queries), dataset=dataset,
                     data_dir=d.get("data_dir"), seed=seed, query_file=query_file, query_key=query_key)


def _check_protocol(p: ProtocolParams, where: str) -> None:
    values = asdict(p)
    for name, param in pp.PARAMS.items():
        param.check(values[name], f"{where}: key '{name}'")
    if p.packing not in ("single", "batch"):
        raise ConfigError(f"{where}: key 'packing': {p.packing!r} is not 'single' or 'batch'")
    if p.batch_size > 1 and p.packing != "batch":
        raise ConfigError(f"{where}: key 'batch_size': {p.batch_size} queries per request need packing 'batch'")
    for key in ("sequential_batch_aps", "plaintext"):
        if not isinstance(values[key], bool):
            raise ConfigError(f"{where}: key '{key}': {values[key]!r} is not true or false")
    if p.he_params is not None and not isinstance(p.he_params, str):
        raise ConfigError(f"{where}: key 'he_params' must be a path string or null")
    pp.check_combination(values, encrypted=not p.plaintext, where=where,
                         names={name: f"key '{name}'" for name in pp.PARAMS})


def new_run_config(run_id: str, run_dir: str | os.PathLike[str], models: Sequence[str | os.PathLike[str]],
                   protocol: ProtocolParams, queries: Sequence[int], *, host: str = "127.0.0.1",
                   ports: Sequence[int] | None = None, qp_id: int = 0, dataset: str | None = "digits",
                   data_dir: str | None = None, seed: int = 0, query_file: str | None = None) -> RunConfig:
    """A whole run's configuration: ``qp-<qp_id>`` with ``models[0]``, ``ap-1..ap-N`` with
    ``models[1..N]`` and the PG, listening on ``ports`` (one per party in that order; default: free
    ones on ``host``), a fresh query-id key, validated like a run file. Each party's own run file is
    cut from it by :func:`party_view`."""
    from capc.net.ports import free_ports
    from capc.parties.queries import new_query_key

    n = len(models) - 1
    qp = f"qp-{qp_id}"
    if ports is None:
        ports = free_ports(n + 2, host)
    parties = [PartyEntry(qp, host, ports[0], str(models[0]))]
    parties += [PartyEntry(f"ap-{i}", host, ports[i], str(models[i])) for i in range(1, n + 1)]
    parties.append(PartyEntry("pg", host, ports[n + 1]))
    cfg = RunConfig(run_id=run_id, run_dir=str(run_dir), pki_dir=str(Path(run_dir) / "pki"),
                    parties=tuple(parties), protocol=protocol, queries=tuple(queries), dataset=dataset,
                    data_dir=data_dir, seed=seed, query_file=query_file, query_key=new_query_key())
    return run_config_from_dict(cfg.to_dict(), where="run configuration")


def load_run_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a run file (JSON, or YAML when it ends in .yaml/.yml)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: run file not found") from None
    if p.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML ({str(exc).splitlines()[0]})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{p}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    return run_config_from_dict(data, where=str(p))


def save_run_config(cfg: RunConfig, path: str | os.PathLike[str]) -> Path:
    """Write the run file atomically (temp file + rename)."""
    p = Path(path)
    tmp = p.with_suffix(p.suffix + ".tmp")
    tmp.write_text(json.dumps(cfg.to_dict(), indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, p)
    return p


def party_view(cfg: RunConfig, name: str, pki_dir: str | os.PathLike[str]) -> RunConfig:
    """The run file of party ``name``: only what that party needs.

    Everyone gets the parties' names and addresses and the protocol parameters.  Only the querying
    party gets the query list, the dataset, the seed, the query file and the key of its opaque query
    ids; an answering party gets its own model path and nobody else's; the PG gets no model.
    """
    me = cfg.party(name)
    parties = tuple(p if p.name == name else dataclasses.replace(p, model=None) for p in cfg.parties)
    view = dataclasses.replace(cfg, parties=parties, pki_dir=str(pki_dir))
    if me.role == "qp":
        return view
    return dataclasses.replace(view, queries=(), dataset=None, data_dir=None, seed=0, query_file=None,
                               query_key=None)


def write_party_files(cfg: RunConfig, pki_src: str | os.PathLike[str], run_dir: str | os.PathLike[str]) -> dict[str, Path]:
    """Give every party a directory ``parties/<name>/`` of its own: its run file (:func:`party_view`),
    the CA certificate, its own certificate and its own private key -- no other party's key and not the
    CA's.  The private keys are then removed from ``pki_src`` (which keeps the CA key and the
    certificates, for the launcher only).  Returns name -> path of the party's run file."""
    from capc.net.certs import CA_CERT_FILE

    src, out = Path(pki_src), Path(run_dir) / PARTY_DIR
    files: dict[str, Path] = {}
    for p in cfg.parties:
        d = out / p.name
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o700)
        shutil.copyfile(src / CA_CERT_FILE, d / CA_CERT_FILE)
        shutil.copyfile(src / f"{p.name}.pem", d / f"{p.name}.pem")
        key = d / f"{p.name}.key"
        fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write((src / f"{p.name}.key").read_bytes())
        files[p.name] = save_run_config(party_view(cfg, p.name, d), d / RUN_FILE)
    for p in cfg.parties:
        (src / f"{p.name}.key").unlink(missing_ok=True)
    return files
