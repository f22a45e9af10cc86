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


#: Bumped when what :func:`plan_facts` stores changes.
_FACTS_FORMAT = 2


def _compiler_digest() -> str:
    """Changes whenever the code that turns a model into a plan or a bound changes."""
    import hashlib

    import capc.he as he

    h = hashlib.sha256(str(_FACTS_FORMAT).encode())
    for name in ("compiler.py", "plan.py", "hybrid.py", "bounds.py", "layout.py"):
        h.update((Path(he.__file__).parent / name).read_bytes())
    return h.hexdigest()


def plan_facts(model_path: str, cfg: RunConfig) -> tuple[Any, list[float]]:
    """What the preflight needs of an answering party's model, without its weights: the public plan
    (what the AP sends the QP anyway) and the sound bound over the input domain on the outputs of
    each CKKS segment (the logits last; one segment unless the model has ReLU / max-pool layers).

    Compiling a Keras model means importing TensorFlow (seconds), so the facts are kept in
    ``$CAPC_CACHE_DIR/plans/`` (default ``~/.cache/capc/plans``) under the SHA-256 of the model file and
    of capc's compiler: a model checked once is checked again in well under a second, and a changed
    file or compiler is compiled afresh. The AP itself always compiles its model."""
    import base64
    import hashlib
    import json
    import os

    from capc.he.hybrid import public_plan_from_bytes
    from capc.learning.default_models import cache_models_dir

    path = Path(model_path)
    if not path.is_file():
        raise ConfigError(f"model file {path} does not exist")
    key = hashlib.sha256(path.read_bytes() + _compiler_digest().encode()).hexdigest()
    cache = cache_models_dir().parent / "plans" / f"{key}.json"
    facts = None
    try:
        facts = json.loads(cache.read_text())
        pub = public_plan_from_bytes(base64.b64decode(facts["public_plan"]))
        bounds = [float(b) for b in facts["segment_bounds"]]
    except (OSError, ValueError, KeyError, TypeError, CapcError):
        facts = None
    if facts is None:
        from capc.he.bounds import segment_bounds

        plan = load_plan(model_path, cfg)
        pub, bounds = plan.public_plan, segment_bounds(plan)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({"model": str(path), "public_plan": base64.b64encode(pub.to_bytes()).decode(),
                                       "segment_bounds": bounds}))
            os.replace(tmp, cache)
        except OSError:
            pass  # a read-only cache only costs the next check its speed
    if pub.num_classes != cfg.protocol.num_classes:
        raise ConfigError(f"model {path} has {pub.num_classes} outputs, the run has "
                          f"{cfg.protocol.num_classes} classes (--num_classes)")
    return pub, bounds


def preflight(cfg: RunConfig) -> list[Any]:
    """Check, before any party process starts, what each answering party would refuse minutes later:
    its model file compiles to an HE plan with the run's number of classes, the run's CKKS
    parameters serve that plan with the requested mask and packing (levels, slots, headroom, noise),
    and the mask sized by the plan's sound logit bound keeps enough hiding bits.  Returns the validated
    :class:`~capc.he.params.HESetup` per distinct model; raises :class:`~capc.errors.CapcError`
    naming the party and what is wrong."""
    from capc.he.params import mask_sizing

    setups, seen = [], {}
    p = cfg.protocol
    for ap in cfg.answering_parties:
        if ap.model is None or ap.model in seen:
            continue
        try:
            pub, bounds = plan_facts(ap.model, cfg)
            seen[ap.model] = he_setup(pub, cfg)
            # the AP sizes each mask by the sound bound over the input domain (the logits' also by the
            # declared bound): refuse now what it would
            for k, bound in enumerate(bounds):
                last = k == len(bounds) - 1
                mask_sizing(p.logit_bound if last else 0.0, bound, p.frac_bits, requested=p.hiding_bits)
        except CapcError as exc:
            raise type(exc)(f"{ap.name}: {exc}") from None
        setups.append(seen[ap.model])
    return setups
