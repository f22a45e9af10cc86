"""Choosing and validating CKKS parameters for a plan, including the mask headroom.

Constraints checked by :func:`choose_params` (each failure says which and proposes parameters):

* **Levels.** Every affine stage and every square costs one rescale, so the file must have at least
  ``plan.depth`` middle primes (``coeff_modulus[1:-1]``).
* **Slots.** The single-query layout must fit ``N/2`` slots (:mod:`capc.he.layout`).
* **Mask headroom.** The answering party returns ``Enc(z - r)`` with ``|r| <= 2^s B``.  At the output
  level the ciphertext modulus is the product of ``coeff_modulus[0]`` and the middle primes the plan
  did not use, so we need ``log2(Q_out) >= log2(scale) + s + ceil(log2 B) + 2`` (sign bit and margin).
* **Decoding precision.** CKKS decodes to float64 (53-bit mantissa), so a value of magnitude
  ``2^(s + ceil(log2 B))`` is known only to about ``2^(s + ceil(log2 B) - 52)``.  The shares satisfy
  ``a + b = round(2^f z) +- 1`` only if that error stays below ``2^-(f+1)``, which needs
  ``s + ceil(log2 B) + f <= PRECISION_BITS`` (= 48; measured: the error is about 2^(s + ceil(log2 B) - 50.7), from the encoder and decoder FFTs
  FFT rounding; measured in the tests).
* **complex_packing** (he-transformer's flag for two reals per complex slot) is refused for a plan
  with squares: a ciphertext square multiplies complex slots, mixing the two packed values
  ((a + ib)^2 = a^2 - b^2 + 2iab), so every square would need an extra conjugation and level.  A plan
  without squares (the hybrid ReLU models) accepts it: its affine maps act on both parts alike.  capc
  itself packs one real per slot either way.
* **Key switching.** Rotations (single packing) and relinearisation (squares) are sound only with a
  special prime at least as large as the largest data prime; the original ``config/10.json`` (30-bit
  special prime, 47-bit first prime) garbles every rotation, so it serves only square-free models in
  batch packing, and the refusal says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import capc.protocol_params as pp
from capc.config import HE_STANDARD_MAX_BITS, HEParams, he_params_from_dict
from capc.errors import ConfigError
from capc.he.errors import HEError, ParameterError
from capc.he.layout import single_layout
from capc.he.hybrid import segments_of
from capc.he.plan import as_public

#: Largest s + ceil(log2 B) + f for which float64 CKKS decoding keeps a + b within +-1.
PRECISION_BITS = pp.PRECISION_BITS
#: Default statistical hiding bits per logit, logit bound and fixed-point fraction bits (declared once,
#: in :mod:`capc.protocol_params`).
DEFAULT_HIDING_BITS = pp.HIDING_BITS.default
DEFAULT_LOGIT_BOUND = pp.LOGIT_BOUND.default
DEFAULT_FRAC_BITS = pp.FRAC_BITS.default
PACKINGS = ("single", "batch")


@dataclass(frozen=True)
class HESetup:
    """Parameters validated for one plan and packing (what :func:`choose_params` returns).

    Attributes:
        he_params: the CKKS parameters.
        packing: ``"single"`` or ``"batch"``.
        hiding_bits: s, the per-logit statistical hiding of the mask (distance <= 2^-s).
        logit_bound: B, the assumed bound on |logit|.
        frac_bits: f, the fixed-point fraction bits of the shares.
        depth: levels the plan uses.
        output_modulus_bits: bits of the ciphertext modulus at the output level.
        mask_headroom_bits: output modulus bits minus what the masked value needs (>= 0).
    """

    he_params: HEParams
    packing: str
    hiding_bits: int
    logit_bound: float
    frac_bits: int
    depth: int
    output_modulus_bits: int
    mask_headroom_bits: int

    @property
    def log2_bound(self) -> int:
        return max(0, math.ceil(math.log2(self.logit_bound)))


#: Scale bits kept above the fraction bits f so that CKKS's own error stays far below a share unit.
#: Measured on the cryptonets digits models (depth 5, single packing): at scale 2^24 the logit error
#: reaches 0.27, so 2^3 * error > 2 and shares are off by 2-3; the error halves with every scale bit,
#: and f + 28 bits keep 2^f * error below 1/64.
NOISE_MARGIN_BITS = 28


#: The same margin for a plan without squares (the hybrid ReLU models: every CKKS segment is affine
#: maps on a fresh ciphertext, so the error is the encryption, rotation and rescaling error times the
#: weights, not amplified by squaring), by packing.  Measured on the cryptonets-relu layout at scale
#: 2^24 (tests/he/test_hybrid_accuracy.py): the error is about 2^-11 with batch packing (no rotations)
#: and 2^-6.2 with single packing (the diagonal method's key-switched rotations), i.e. 2^-(scale
#: bits - 13) and 2^-(scale bits - 18); one bit more than the share tolerance 2^-(f+1) needs, plus one.
LINEAR_NOISE_MARGIN_BITS = {"batch": 15, "single": 20}


def has_square(plan: Any) -> bool:
    """Whether any CKKS segment of ``plan`` (plain or hybrid, public or full) squares a ciphertext."""
    return any(kind == "square" for seg in segments_of(as_public(plan)) for kind, _, _ in seg.stage_shapes)


def needs_key_switching(plan: Any, packing: str, poly_modulus_degree: int) -> bool:
    """Whether evaluating ``plan`` with ``packing`` uses key switching: relinearising a square, or
    rotating (single packing's diagonal and gather layouts)."""
    return has_square(plan) or (packing == "single" and bool(as_public(plan).rotations(packing, poly_modulus_degree)))


def min_scale_bits(frac_bits: int, plan: Any = None, packing: str = "single") -> int:
    """Fewest scale bits for which CKKS's evaluation error keeps the shares within +-1 at
    ``frac_bits`` (for ``plan`` with ``packing``; the stricter square-model margin when no plan is
    given)."""
    if plan is not None and not has_square(plan):
        return frac_bits + LINEAR_NOISE_MARGIN_BITS.get(packing, max(LINEAR_NOISE_MARGIN_BITS.values()))
    return frac_bits + NOISE_MARGIN_BITS


def ckks_error(log2_scale: float, packing: str) -> float:
    """The measured CKKS evaluation error of one square-free segment (see
    :data:`LINEAR_NOISE_MARGIN_BITS`), with the one bit of safety the margin keeps."""
    return 2.0 ** -(log2_scale - LINEAR_NOISE_MARGIN_BITS.get(packing, 20) + 1)


def output_modulus_bits(he: HEParams, depth: int) -> int:
    """Bits of the modulus left after ``depth`` rescales: q0 plus the unused middle primes."""
    middle = he.coeff_modulus[1:-1]
    return he.coeff_modulus[0] + sum(middle[: len(middle) - depth])


def needed_output_bits(log2_scale: float, hiding_bits: int, log2_bound: int) -> int:
    """Output-level modulus bits the masked value ``z - r`` needs (see module docstring)."""
    return math.ceil(log2_scale) + hiding_bits + log2_bound + 2


def _check_args(packing: str, hiding_bits: int, logit_bound: float, frac_bits: int) -> int:
    if packing not in PACKINGS:
        raise HEError(f"unknown packing {packing!r} (use 'single' or 'batch')")
    values = {"hiding_bits": hiding_bits, "logit_bound": logit_bound, "frac_bits": frac_bits}
    for name, value in values.items():
        problem = pp.PARAMS[name].problem(value)
        if problem is not None:
            raise HEError(f"{name} {problem}")
    try:
        pp.check_combination(values, names={name: name for name in pp.PARAMS})
    except pp.ParamError as exc:
        raise ParameterError(str(exc)) from None
    return pp.log2_bound(logit_bound)


def recommend_params(plan: Any, *, packing: str = "single", hiding_bits: int = DEFAULT_HIDING_BITS,
                     logit_bound: float = DEFAULT_LOGIT_BOUND, frac_bits: int = DEFAULT_FRAC_BITS,
                     scale_bits: int = 40, security_level: int = 128) -> HEParams:
    """Smallest-ring parameters that serve ``plan``: ``depth`` middle primes of ``scale_bits``,
    enough extra (unused) middle primes plus a 60-bit first prime for the mask headroom, and a
    60-bit special prime.

    Raises:
        ParameterError: if no ring degree up to 32768 fits.
    """
    pub = as_public(plan)
    log2_bound = _check_args(packing, hiding_bits, logit_bound, frac_bits)
    need = needed_output_bits(scale_bits, hiding_bits, log2_bound)
    first = min(60, max(need, scale_bits + 10))
    extra = max(0, math.ceil((need - first) / scale_bits))
    moduli = [first] + [scale_bits] * (pub.depth + extra) + [60]
    table = HE_STANDARD_MAX_BITS[security_level]
    for n in sorted(table):
        if n < 4096 or sum(moduli) > table[n]:
            continue
        if packing == "single":
            try:
                for seg in segments_of(pub):
                    single_layout(seg, n // 2)
            except ParameterError:
                continue
        return he_params_from_dict({
            "scheme_name": "HE_SEAL", "poly_modulus_degree": n, "security_level": security_level,
            "coeff_modulus": moduli, "scale": float(2 ** scale_bits), "complex_packing": False,
            "description": f"capc: depth {pub.depth}, {hiding_bits} hiding bits, logit bound "
                           f"{logit_bound:g}, {packing} packing"})
    raise ParameterError(f"no ring degree up to 32768 holds depth {pub.depth} with {need} output bits "
                         f"({sum(moduli)} modulus bits) at {security_level}-bit security")


def _proposal(plan: Any, packing: str, hiding_bits: int, logit_bound: float, frac_bits: int,
              scale_bits: int) -> str:
    try:
        rec = recommend_params(plan, packing=packing, hiding_bits=hiding_bits, logit_bound=logit_bound,
                               frac_bits=frac_bits, scale_bits=scale_bits)
    except (ParameterError, ConfigError):
        return ""
    return f"; parameters that work: {rec.to_json_dict()}"


def choose_params(plan: Any, he_params: HEParams | None = None, *, packing: str = "single",
                  hiding_bits: int = DEFAULT_HIDING_BITS, logit_bound: float = DEFAULT_LOGIT_BOUND,
                  frac_bits: int = DEFAULT_FRAC_BITS) -> HESetup:
    """Validate ``he_params`` for ``plan`` (or recommend parameters when it is None).

    Returns:
        An :class:`HESetup`.

    Raises:
        ParameterError: naming every failed constraint (levels, slots, mask headroom, precision,
            complex packing) and proposing parameters that work.
    """
    pub = as_public(plan)
    log2_bound = _check_args(packing, hiding_bits, logit_bound, frac_bits)
    if he_params is None:
        he_params = recommend_params(pub, packing=packing, hiding_bits=hiding_bits,
                                     logit_bound=logit_bound, frac_bits=frac_bits,
                                     scale_bits=max(40, min_scale_bits(frac_bits, pub, packing)))
    if not isinstance(he_params, HEParams):
        raise HEError(f"he_params must be capc.config.HEParams, got {type(he_params).__name__}")
    scale_bits = max(20, min(40, round(he_params.log2_scale)))
    problems: list[str] = []
    if he_params.complex_packing and has_square(pub):
        problems.append("complex_packing=true is not supported: squaring a complex slot mixes the two "
                        "packed reals ((a+ib)^2 = a^2-b^2+2iab), so every square activation would need "
                        "an extra conjugation and level; set complex_packing to false")
    levels = he_params.multiplicative_depth
    if levels < pub.depth:
        problems.append(f"too few levels: the model needs depth {pub.depth} (one per affine stage and "
                        f"per square) but coeff_modulus {list(he_params.coeff_modulus)} has {levels} "
                        f"middle primes")
    if packing == "single":
        try:
            for seg in segments_of(pub):
                single_layout(seg, he_params.slots)
        except ParameterError as exc:
            problems.append(f"too few slots: {exc}")
    special, data_max = he_params.coeff_modulus[-1], max(he_params.coeff_modulus[:-1])
    if special < data_max and needs_key_switching(pub, packing, he_params.poly_modulus_degree):
        problems.append(f"key switching would be unsound: the special prime has {special} bits, fewer than "
                        f"the largest data prime ({data_max} bits), so every "
                        f"{'relinearisation' if has_square(pub) else 'rotation'} adds noise about "
                        f"2^{data_max - special} times the key-switching noise (the results come back "
                        f"garbled); make the last prime at least {data_max} bits" +
                        ("" if has_square(pub) else
                         ", or use batch packing (--packing batch, or --batch_size > 1), which needs no "
                         "key switching for a model without squares"))
    if he_params.log2_scale < min_scale_bits(frac_bits, pub, packing):
        problems.append(f"too noisy: scale 2^{he_params.log2_scale:g} leaves CKKS evaluation errors that "
                        f"move {frac_bits}-fraction-bit shares by more than 1 (measured: "
                        + ("logit errors up to 0.27 at 2^24 for a square model" if has_square(pub) else
                           f"errors about 2^-(scale bits - {LINEAR_NOISE_MARGIN_BITS.get(packing, 20) - 2}) "
                           f"with {packing} packing") + "); the scale needs at least "
                        f"2^{min_scale_bits(frac_bits, pub, packing)}")
    out_bits = output_modulus_bits(he_params, min(pub.depth, levels))
    need = needed_output_bits(he_params.log2_scale, hiding_bits, log2_bound)
    if levels >= pub.depth and out_bits < need:
        problems.append(f"too little headroom for the mask: the output level keeps {out_bits} modulus "
                        f"bits but scale 2^{he_params.log2_scale:g} + {hiding_bits} hiding bits + "
                        f"log2 of the logit bound ({log2_bound}) + 2 needs {need}")
    if problems:
        src = he_params.source or "the given parameters"
        raise ParameterError(f"{src} cannot serve this model: " + "; ".join(problems) +
                             _proposal(pub, packing, hiding_bits, logit_bound, frac_bits,
                                       max(scale_bits, min_scale_bits(frac_bits, pub, packing), 40)))
    return HESetup(he_params, packing, hiding_bits, float(logit_bound), frac_bits, pub.depth,
                   out_bits, out_bits - need)


#: Fewest hiding bits :func:`achievable_hiding_bits` accepts when it has to lower s.
MIN_HIDING_BITS = 24


def achievable_hiding_bits(logit_bound: float, frac_bits: int = DEFAULT_FRAC_BITS, *,
                           requested: int = DEFAULT_HIDING_BITS,
                           minimum: int = MIN_HIDING_BITS) -> int:
    """The hiding bits s a mask can have for a (derived) logit bound B: ``requested`` when
    ``requested + ceil(log2 B) + f <= PRECISION_BITS``, else the largest s that fits, down to
    ``minimum``.

    Raises:
        ParameterError: if even ``minimum`` bits do not fit, naming B, f and what would fit.
    """
    if not isinstance(logit_bound, (int, float)) or not math.isfinite(logit_bound) or logit_bound <= 0:
        raise HEError(f"logit_bound must be a positive finite number, got {logit_bound!r}")
    log2_bound = max(0, math.ceil(math.log2(logit_bound)))
    s = min(int(requested), PRECISION_BITS - log2_bound - int(frac_bits))
    if s < minimum:
        raise ParameterError(
            f"the logit bound B = {logit_bound:.6g} (2^{log2_bound}) with {frac_bits} fraction bits leaves "
            f"only {s} hiding bits within the {PRECISION_BITS}-bit float64 decoding precision, below the "
            f"minimum of {minimum}; the model's weights make its logits too large to mask (retrain with "
            f"smaller weights or a narrower input domain, or lower --round_exp)")
    return s


def mask_sizing(declared_bound: float, derived_bound: float, frac_bits: int, *,
                requested: int = DEFAULT_HIDING_BITS, minimum: int = MIN_HIDING_BITS) -> tuple[int, int, float]:
    """How an answering party sizes its mask: ``(s, ceil(log2 B), B)``.

    ``B`` is the larger of the declared bound (``--max_logit``) and the sound bound derived from the
    plan over the input domain (:func:`capc.he.bounds.derive_logit_bound`), so it always holds; ``s`` is
    :func:`achievable_hiding_bits` for it with one precision bit kept back, so that the mask grid
    ``2^-G`` stays at most half the flooding noise's standard deviation ``2^-(f+4)``
    (:func:`capc.he.mask.grid_smoothing_bits`).

    Raises:
        ParameterError: if fewer than ``minimum`` hiding bits fit.
    """
    bound = max(float(declared_bound), float(derived_bound))
    s = achievable_hiding_bits(bound, int(frac_bits) + 1, requested=requested, minimum=minimum)
    return s, max(0, math.ceil(math.log2(bound))), bound
