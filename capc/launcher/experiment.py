"""``run_experiment.py``'s body: parse flags, prepare the run directory, run the protocol.

The protocol itself lives in ``capc.parties.orchestrate`` and is imported lazily::

    def run_protocol(config: ExperimentConfig, launcher: Launcher) -> ExperimentResult

It starts the parties through the :class:`~capc.launcher.launcher.Launcher`, waits for them, and
returns an :class:`~capc.launcher.results.ExperimentResult`, which :func:`main` prints as the final
table. Exit status: 0 success, 1 a party or the protocol failed, 2 bad flags, 130 interrupted
(Ctrl-C), 143/129 on SIGTERM/SIGHUP (parties are stopped first in every case).
"""

from __future__ import annotations

import importlib
import os
import signal
import sys
import threading
from typing import IO, Callable, Sequence

from capc.errors import CapcError
from capc.launcher.errors import FlagError, LauncherError, ProtocolNotBuilt
from capc.launcher.flags import ExperimentConfig, build_parser, validate, weak_settings
from capc.launcher.launcher import Launcher
from capc.launcher.results import ExperimentResult
from capc.launcher.rundir import RunDir

ProtocolRunner = Callable[[ExperimentConfig, Launcher], ExperimentResult]
RUNNER_MODULE = "capc.parties.orchestrate"
RUNNER_NAME = "run_protocol"
#: Optional: ``prepare_protocol(config, say) -> ProtocolRunner`` checks what it can before the run
#: directory is made and any party starts, and returns the runner of the checked run.
PREPARER_NAME = "prepare_protocol"


class Terminated(BaseException):
    """Raised in the main thread on SIGTERM or SIGHUP so that the parties are stopped first."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)


def _raise_terminated(signum: int, frame: object) -> None:
    raise Terminated(signum)


def load_runner() -> ProtocolRunner:
    """Import ``capc.parties.orchestrate.run_protocol``; raise :class:`ProtocolNotBuilt` if absent."""
    try:
        module = importlib.import_module(RUNNER_MODULE)
    except ModuleNotFoundError as exc:
        if exc.name in (RUNNER_MODULE, "capc.parties") or exc.name is None:
            raise ProtocolNotBuilt(
                f"protocol not built yet: {RUNNER_MODULE} is missing, so there is nothing to "
                f"run (no results were produced)") from None
        raise ProtocolNotBuilt(f"{RUNNER_MODULE} cannot be imported: module {exc.name!r} is "
                               f"missing (is every dependency installed?)") from None
    except ImportError as exc:
        raise ProtocolNotBuilt(f"{RUNNER_MODULE} cannot be imported: {exc}") from None
    runner = getattr(module, RUNNER_NAME, None)
    if not callable(runner):
        raise ProtocolNotBuilt(f"protocol not built yet: {RUNNER_MODULE} has no {RUNNER_NAME}()")
    return runner


def choose_backend(config: ExperimentConfig, environ: dict[str, str] | None = None) -> str:
    """``"tmux"`` with ``--tmux`` or, by default, inside tmux (``$TMUX``); else ``"subprocess"``."""
    env = os.environ if environ is None else environ
    if config.tmux is None:
        return "tmux" if env.get("TMUX") else "subprocess"
    return "tmux" if config.tmux else "subprocess"


def main(argv: Sequence[str] | None = None, *, runner: ProtocolRunner | None = None,
         out: IO[str] | None = None, err: IO[str] | None = None,
         tmux_options: dict | None = None) -> int:
    """Run one experiment from command-line flags; return the process exit status.

    ``runner`` replaces the lazily imported ``run_protocol`` (tests, other drivers);
    ``tmux_options`` go to the tmux backend (e.g. a private ``socket_name``).
    """
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    parser = build_parser()
    try:
        ns = parser.parse_args(list(argv) if argv is not None else None)
        config = validate(ns)
    except FlagError as exc:
        print(f"{parser.prog}: error: {exc}", file=err)
        return 2
    except SystemExit as exc:  # argparse: --help (0) or a malformed command line (2)
        return int(exc.code or 0)

    try:
        run = runner if runner is not None else load_runner()
    except ProtocolNotBuilt as exc:
        print(f"{parser.prog}: {exc}", file=err)
        return 1

    for note in weak_settings(config):
        print(f"warning: {note}", file=err)
    prepare = getattr(sys.modules.get(RUNNER_MODULE), PREPARER_NAME, None) if runner is None else None
    if prepare is not None:
        # a bad run is refused here: no run directory is made and no party is started
        try:
            run = prepare(config, lambda text: print(text, file=out, flush=True))
        except CapcError as exc:
            print(f"{parser.prog}: {exc}", file=err)
            return 1
    try:
        run_dir = RunDir.create(config.run_dir)
        run_dir.write_params(config.to_json())
        backend = choose_backend(config)
        run_dir.write_run_info(config.seed, list(argv) if argv is not None else sys.argv[1:],
                               {"backend": backend, "plaintext_simulation": config.cpu})
    except (CapcError, OSError) as exc:
        print(f"{parser.prog}: {exc}", file=err)
        return 1

    options = dict(tmux_options or {})
    options.setdefault("session", config.session)
    options.setdefault("n_aps", config.n_parties)
    try:
        launcher = Launcher(run_dir, backend=backend, timeout=config.timeout, out=out,
                            debug=config.debug, timing_extra=config.log_timing_file,
                            tmux_options=options if backend == "tmux" else None)
    except CapcError as exc:
        print(f"{parser.prog}: {exc}", file=err)
        run_dir.close()
        return 1
    status = 1
    previous = {}
    if threading.current_thread() is threading.main_thread():
        # Being killed must not orphan the parties (they run in their own process groups).
        previous = {sig: signal.signal(sig, _raise_terminated)
                    for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with launcher:
            launcher.say(f"run {run_dir.run_id}: {config.n_parties} AP(s), {config.n_queries} "
                         f"quer{'y' if config.n_queries == 1 else 'ies'}, {backend} mode, "
                         f"output in {run_dir.path}")
            result = run(config, launcher)
            if not isinstance(result, ExperimentResult):
                raise LauncherError(f"the protocol runner returned {type(result).__name__}, "
                                    f"not an ExperimentResult")
            launcher.report(result)
            status = 0
    except KeyboardInterrupt:
        print(f"{parser.prog}: interrupted; all parties of run {run_dir.run_id} were stopped",
              file=err)
        status = 130
    except Terminated as exc:
        print(f"{parser.prog}: received {exc}; all parties of run {run_dir.run_id} were stopped",
              file=err)
        status = 128 + exc.signum
    except CapcError as exc:
        print(f"{parser.prog}: {exc}", file=err)
        status = 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        run_dir.close()
    return status


if __name__ == "__main__":  # pragma: no cover - the lead's run_experiment.py is the entry point
    sys.exit(main())
