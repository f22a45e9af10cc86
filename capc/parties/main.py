"""``capc party``: run one party of a CaPC run as its own long-lived process.

    capc party --role ap --name ap-1 --run RUN.json [--listen HOST:PORT]

The run file (:mod:`capc.parties.runconfig`) names every party, its address, its certificate directory
and (for answering parties) its own model. When the process was started by the launcher it also joins
the launcher's control channel (environment ``CAPC_CONTROL_SOCKET``) to report ``ready``, progress,
``done`` or ``failed`` and to receive ``stop``. The querying party works through the run's query list
and exits; answering parties and the privacy guardian serve until told to stop.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import traceback
from dataclasses import asdict
from typing import Any

from capc.errors import CapcError, ConfigError
from capc.parties.common import PartyContext, TimingLog, party_logger
from capc.parties.crypto import providers_for
from capc.parties.runconfig import RunConfig, load_run_config


def build_party_parser(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Arguments of ``capc party``."""
    p.add_argument("--role", required=True, choices=("qp", "ap", "pg"), help="the party's role")
    p.add_argument("--name", help="party name in the run file (default: qp-0, pg, or the only ap)")
    p.add_argument("--run", required=True, metavar="RUN.json", help="the run file")
    p.add_argument("--listen", metavar="HOST:PORT",
                   help="override the address from the run file (APs and the PG listen; the QP connects)")
    return p


def _resolve_name(cfg: RunConfig, role: str, name: str | None) -> str:
    if name:
        entry = cfg.party(name)
        if entry.role != role:
            raise ConfigError(f"party {name} has role {entry.role}, not {role}")
        return name
    candidates = cfg.by_role(role)
    if len(candidates) != 1:
        raise ConfigError(f"--name is required: the run has {len(candidates)} parties with role {role}")
    return candidates[0].name


def _override_listen(cfg: RunConfig, name: str, listen: str | None) -> RunConfig:
    if not listen:
        return cfg
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen {listen!r} is not HOST:PORT")
    return cfg.with_endpoints({name: (host.strip("[]"), int(port))})


def _control_client(name: str) -> Any:
    if not os.environ.get("CAPC_CONTROL_SOCKET"):
        return None
    from capc.launcher.control import ControlClient

    return ControlClient.from_env()


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def cmd_party(args: argparse.Namespace) -> int:
    """Run the party; exit status 0 on a clean finish, 1 when it failed (the reason is logged and
    reported to the launcher)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out of the logs
    cfg = load_run_config(args.run)
    name = _resolve_name(cfg, args.role, args.name)
    # only this party's own model is in its run file (another party's model path is none of its business)
    if args.role == "ap" and not cfg.party(name).model:
        raise ConfigError(f"{args.run}: party {name}: an answering party needs its own 'model'")
    cfg = _override_listen(cfg, name, args.listen)
    log = party_logger(name)
    # SIGTERM (the launcher's second stop signal, or a user's kill) unwinds like Ctrl-C, so that the
    # QP's results file is written and every store is closed; committed labels and charges are safe.
    signal.signal(signal.SIGTERM, _terminate)
    control = _control_client(name)
    ctx = PartyContext(cfg=cfg, name=name, log=log, timing=TimingLog(cfg.run_dir, name), control=control,
                       providers=providers_for(cfg))
    try:
        if args.role == "qp":
            run_querying_party(ctx)
        else:
            run_server_party(ctx, args.role)
    except CapcError as exc:
        log.error("failed: %s", exc)
        ctx.report("failed", reason=str(exc))
        return 1
    except KeyboardInterrupt:
        log.info("interrupted")
        ctx.report("failed", reason="interrupted")
        return 130
    except Exception as exc:  # report the unexpected too, with where it happened
        log.error("failed unexpectedly: %s\n%s", exc, traceback.format_exc())
        ctx.report("failed", reason=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        if control is not None:
            control.close()
    return 0


def run_server_party(ctx: PartyContext, role: str) -> None:
    """An answering party or the privacy guardian: serve until the launcher says stop."""
    from capc.parties.answering_party import AnsweringParty
    from capc.parties.privacy_guardian import PrivacyGuardian

    party = AnsweringParty(ctx) if role == "ap" else PrivacyGuardian(ctx)
    stop = threading.Event()
    if ctx.control is not None:
        def watch() -> None:
            ctx.control.wait_stop()  # returns on "stop" or when the launcher goes away
            stop.set()

        threading.Thread(target=watch, daemon=True).start()
    party.serve(stop)
    ctx.report("done", summary={"party": ctx.name})


def run_querying_party(ctx: PartyContext) -> None:
    """Ask every query of the run, record the labels, write ``results-<qp>.json`` and report done.

    Queries go in batches of the run's batch size (one with single packing unless set); the run stops
    at the first batch the PG refuses for the budget, and when every answering party has failed."""
    from capc.parties.queries import load_queries, wire_query_ids
    from capc.parties.querying_party import QueryingParty, Status

    cfg = ctx.cfg
    xs, ys = load_queries(cfg)
    wire = wire_query_ids(cfg)  # opaque ids: the pool indices never leave this party
    qp = QueryingParty(ctx)
    qp.item_of = dict(zip(wire, (int(q) for q in cfg.queries)))
    ctx.report("ready")
    outcomes = []
    try:
        qp.connect()
        step = max(1, cfg.protocol.batch_size)
        items = [(w, x, y) for w, x, y in zip(wire, xs, ys)]
        for start in range(0, len(items), step):
            if ctx.control is not None and ctx.control.stop_requested():
                ctx.log.info("stop requested after %d queries", len(outcomes))
                break
            done = qp.ask(items[start:start + step])
            for out in done:
                outcomes.append(out)
                ctx.report("progress", event="query", index=len(outcomes), total=len(items),
                           query=qp.item_of.get(out.query_id), answered=out.answered, status=out.status.value,
                           error=out.error[:300])
            # typed, not textual: a replayed or refused query leaves the rest of the run unaffected
            if any(o.status is Status.BUDGET for o in done):
                ctx.log.warning("privacy budget exhausted: no further queries are asked")
                break
            if not any(link.alive for link in qp.aps):
                raise CapcError("every answering party has failed: "
                                + "; ".join(f"{l.name}: {l.failure}" for l in qp.aps))
    finally:
        write_results(ctx, qp, outcomes)
        qp.close()
    ctx.report("done", summary={"queries": len(outcomes), "answered": sum(o.answered for o in outcomes)})


def write_results(ctx: PartyContext, qp: Any, outcomes: list[Any]) -> None:
    """``results-<qp>.json``: each outcome names its pool item; the opaque id is kept beside it."""
    results = [dict(asdict(o), status=o.status.value, answered=o.answered, query_id=qp.item_of.get(o.query_id),
                    wire_id=o.query_id) for o in outcomes]
    path = ctx.run_dir / f"results-{ctx.name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"party": ctx.name, "queries": results,
                               "dropped_aps": {l.name: l.failure for l in qp.aps if not l.alive}},
                              indent=2) + "\n")
    os.replace(tmp, path)
