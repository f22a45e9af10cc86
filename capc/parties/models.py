"""The parties' use of :mod:`capc.he`: compile an AP's own model, and choose the CKKS parameters both
sides must agree on (from the run's parameter file or capc's recommendation)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from capc.errors import CapcError, ConfigError
from capc.parties.runconfig import RunConfig


def load_plan(model_path: str, cfg: RunConfig) -> Any:
    """Compile an answering party's model file (.keras or frozen .pb) into an HE evaluation plan."""
    from capc.he import compile_model

    path = Path(model_path)
    if not path.exists():
        raise ConfigError(f"model file {path} does not exist")
    plan = compile_model(str(path))
    if plan.num_classes != cfg.protocol.num_classes:
        raise ConfigError(f"model {path} has {plan.num_classes} outputs, the run has "
                          f"{cfg.protocol.num_classes} classes (--num_classes)")
    return plan


def he_setup(public_plan: Any, cfg: RunConfig) -> Any:
    """Validated CKKS parameters for a plan: the run's parameter file, or capc's recommendation."""
    from capc.config import load_he_params
    from capc.he import choose_params

    p = cfg.protocol
    he_params = load_he_params(p.he_params) if p.he_params else None
    return choose_params(public_plan, he_params, packing=p.packing, hiding_bits=p.hiding_bits,
                         logit_bound=p.logit_bound, frac_bits=p.frac_bits)


def preflight(cfg: RunConfig) -> list[Any]:
    """Check, before any party process starts, what each answering party would refuse minutes later:
    its model file compiles to an HE plan with the run's number of classes, the run's CKKS
    parameters serve that plan with the requested mask and packing, and the mask sized by the plan's
    sound logit bound keeps enough hiding bits.  Returns the validated
    :class:`~capc.he.params.HESetup` per distinct model; raises :class:`~capc.errors.CapcError`
    naming the party and what is wrong."""
    setups, seen = [], {}
    for ap in cfg.answering_parties:
        if ap.model is None or ap.model in seen:
            continue
        try:
            plan = load_plan(ap.model, cfg)
            seen[ap.model] = he_setup(plan.public_plan, cfg)
            # the AP sizes its mask by the sound bound over the input domain: refuse now what it would
            from capc.he.bounds import derive_logit_bound
            from capc.he.params import mask_sizing

            p = cfg.protocol
            mask_sizing(p.logit_bound, derive_logit_bound(plan), p.frac_bits, requested=p.hiding_bits)
        except CapcError as exc:
            raise type(exc)(f"{ap.name}: {exc}") from None
        setups.append(seen[ap.model])
    return setups
