"""The protocol's parameters, each declared once: name, type, limits, default and meaning.

Every layer that takes one of these values checks it against its declaration here, so a value the
launcher accepts is a value every party accepts: the command-line flags (:mod:`capc.launcher.flags`
builds its options and range checks from :data:`PARAMS`), the run file
(:class:`capc.parties.runconfig.ProtocolParams` takes its defaults and checks from them),
:mod:`capc.he.params` and :mod:`capc.fixedpoint`. Constraints between parameters (the signed ring must
hold a masked share; CKKS's float64 decoding must keep the bits the shares need; no noise needs an
explicit infinite budget) are in :func:`check_combination`.

This module imports nothing heavy, so flag parsing stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

from capc.errors import ConfigError

#: Bits of the ring the shares live in (Z_2^64, read as signed).
RING_BITS = 64
#: Largest s + ceil(log2 B) + f for which float64 CKKS decoding keeps a + b within +-1 of
#: round(2^f z): the decoder's FFTs cost about 5 of float64's 53 mantissa bits (measured, see
#: :mod:`capc.he.params`).
PRECISION_BITS = 48
#: File endings of the model formats a party can load; a .keras and a .pb with one stem are one model.
MODEL_SUFFIXES = (".keras", ".h5", ".pb")


class ParamError(ConfigError):
    """A protocol parameter is out of its declared range; ``param`` is its declaration."""

    def __init__(self, param: "Param", message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class Param:
    """One protocol parameter.

    Attributes:
        name: its key in the run file (``protocol.<name>``) and its keyword in the code.
        type: ``int`` or ``float``.
        default: the value when nothing sets it.
        doc: what it means, for ``--help`` and the docs.
        flags: its command-line spellings, the original CaPC name first.
        lo, hi: inclusive limits (``None``: unbounded); ``lo_open``/``hi_open`` make them exclusive.
        allow_inf: a float that may be ``inf`` (the budget: no limit, charges still recorded).
    """

    name: str
    type: type
    default: Any
    doc: str
    flags: tuple[str, ...] = ()
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    allow_inf: bool = False

    @property
    def flag(self) -> str:
        """How messages name it to a user of the command line: ``--a/--b`` or ``--name``."""
        return "/".join(self.flags) if self.flags else f"--{self.name}"

    @property
    def range_text(self) -> str:
        """The accepted values in words, e.g. ``an integer in 0..40`` or ``a number in (0, 1)``."""
        kind = "an integer" if self.type is int else "a number"
        if self.lo is not None and self.hi is not None:
            if self.type is int:
                return f"{kind} in {int(self.lo)}..{int(self.hi)}"
            left, right = "(" if self.lo_open else "[", ")" if self.hi_open else "]"
            return f"{kind} in {left}{self.lo:g}, {self.hi:g}{right}"
        if self.lo is not None:
            bound = f"{'>' if self.lo_open else '>='} {self.lo:g}"
            return f"{kind} {bound}" + (" (inf allowed)" if self.allow_inf else "")
        return kind

    def check(self, value: Any, where: str | None = None) -> Any:
        """``value`` as this parameter's type, or :class:`ParamError` naming ``where`` (default: the
        parameter's name) and the accepted range."""
        ok, value = self._accept(value)
        if not ok:
            raise ParamError(self, f"{where or self.name}: {value!r} is not {self.range_text}")
        return value

    def problem(self, value: Any) -> str | None:
        """What is wrong with ``value`` in words, or None when it is accepted."""
        ok, value = self._accept(value)
        return None if ok else f"must be {self.range_text}, got {value!r}"

    def _accept(self, value: Any) -> tuple[bool, Any]:
        ok = not isinstance(value, bool)
        if ok and self.type is int:
            ok = isinstance(value, int) or (hasattr(value, "__index__") and not isinstance(value, float))
            value = int(value) if ok else value
        elif ok:
            ok = isinstance(value, (int, float))
            value = float(value) if ok else value
            if ok and not math.isfinite(value):
                ok = self.allow_inf and value == math.inf
        if ok and self.lo is not None and not (value > self.lo if self.lo_open else value >= self.lo):
            ok = False
        if ok and self.hi is not None and math.isfinite(value) and not (
                value < self.hi if self.hi_open else value <= self.hi):
            ok = False
        return ok, value


NUM_CLASSES = Param("num_classes", int, 10, "number of classes (the logit length)",
                    ("--num_classes",), lo=2, hi=65536)
FRAC_BITS = Param("frac_bits", int, 3,
                  "fixed-point fraction bits f: logits are shared as round(2^f z) in Z_2^64; capc honours "
                  "it and rounds (the original ignored it and truncated)", ("--round_exp",), lo=0, hi=40)
HIDING_BITS = Param("hiding_bits", int, 40,
                    "statistical hiding bits s of the AP's logit mask: uniform over a range 2^s times wider "
                    "than the logit bound, so it hides a logit up to statistical distance 2^-s (the "
                    "original's r* = max_logit +- 2^rstar_exp was a weak real-valued mask)",
                    ("--rstar_exp", "--hiding_bits"), lo=1, hi=60)
LOGIT_BOUND = Param("logit_bound", float, 16.0,
                    "public bound B on |logit| the mask range 2^s B is sized for (each AP raises it to its "
                    "model's sound bound over the input domain); with encryption s + ceil(log2 B) + f "
                    f"must be <= {PRECISION_BITS} (float64 CKKS decoding)", ("--max_logit",),
                    lo=0, hi=2.0 ** 20, lo_open=True, hi_open=True)
VOTE_SCALE_EXP = Param("vote_scale_exp", int, 4,
                       "vote scale exponent g: votes and the integer noise are scaled by 2^g",
                       ("--vote_scale_exp",), lo=0, hi=20)
SIGMA_GNMAX = Param("sigma_gnmax", float, 2.0,
                    "sigma_G of (Confident-)GNMax in votes: discrete Gaussian noise added inside the 2PC, "
                    "with privacy accounting (the original added sigma=0.1 with none)",
                    ("--dp_noise_scale",), lo=0)
SIGMA_THRESHOLD = Param("sigma_threshold", float, 0.0,
                        "sigma_T of the Confident-GNMax threshold test, in votes", ("--sigma_threshold",), lo=0)
THRESHOLD = Param("threshold", float, 0.0, "threshold T in votes; T=0 with sigma_T=0 is plain GNMax",
                  ("--threshold",), lo=0)
BUDGET_EPS = Param("budget_eps", float, 10.0,
                   "privacy budget epsilon per querying party (inf: no limit, charges still recorded)",
                   ("--budget_eps",), lo=0, lo_open=True, allow_inf=True)
DELTA = Param("delta", float, 1e-5, "privacy parameter delta", ("--delta",), lo=0, hi=1, lo_open=True,
              hi_open=True)
BATCH_SIZE = Param("batch_size", int, 1,
                   "queries per request; values > 1 use CKKS batch packing (one query per slot; the "
                   "original rejected them)", ("--batch_size",), lo=1, hi=65536)
TIMEOUT = Param("timeout", float, 600.0,
                "deadline in seconds for each wait (parties ready, each step done)", ("--timeout",),
                lo=0, lo_open=True)

#: Every declared parameter by name, in the order ``--help`` lists them.
PARAMS: dict[str, Param] = {p.name: p for p in (
    NUM_CLASSES, FRAC_BITS, HIDING_BITS, LOGIT_BOUND, VOTE_SCALE_EXP, SIGMA_GNMAX, SIGMA_THRESHOLD,
    THRESHOLD, BUDGET_EPS, DELTA, BATCH_SIZE, TIMEOUT)}


def log2_bound(logit_bound: float) -> int:
    """ceil(log2 B), at least 0: the bits the logit bound takes in the masked value."""
    return max(0, math.ceil(math.log2(logit_bound)))


def check_combination(values: Mapping[str, Any], *, encrypted: bool = True, where: str = "",
                      names: Mapping[str, str] | None = None) -> None:
    """Raise :class:`ParamError` when declared parameters that are each in range do not work together.

    ``values`` maps parameter names to values (missing ones take their defaults); ``encrypted`` False
    (``--cpu``) skips the CKKS decoding limit; ``where`` prefixes the message (e.g. the run file) and
    ``names`` says how to call each parameter (default: its flags).

    * Shares are ``round(2^f (z - r))`` and ``round(2^f r)`` with ``|r| <= 2^s B``: both must fit the
      signed ring, i.e. ``2^f B (2^s + 1) < 2^63``.
    * With encryption, ``s + ceil(log2 B) + f <= PRECISION_BITS`` (float64 CKKS decoding).
    * A zero noise scale costs infinite epsilon, so it needs ``budget_eps = inf`` on purpose.
    """
    v = {name: values.get(name, p.default) for name, p in PARAMS.items()}
    n = {name: (names or {}).get(name, p.flag) for name, p in PARAMS.items()}
    at = f"{where}: " if where else ""
    f, s, b = v["frac_bits"], v["hiding_bits"], v["logit_bound"]
    lower = f"lower {n['hiding_bits']}, {n['frac_bits']} or {n['logit_bound']}"
    bits = f + math.log2(b) + math.log2(2.0 ** s + 1)
    if bits >= RING_BITS - 1:
        raise ParamError(HIDING_BITS, f"{at}{n['hiding_bits']}: 2^f * B * (2^s + 1) with f={f}, B={b:g}, "
                         f"s={s} is 2^{bits:.1f}, which does not fit the signed 64-bit ring (needs < 2^63); "
                         f"{lower}")
    total = s + log2_bound(b) + f
    if encrypted and total > PRECISION_BITS:
        raise ParamError(HIDING_BITS, f"{at}{n['hiding_bits']}: hiding bits ({s}) + ceil(log2 B) "
                         f"({log2_bound(b)}) + fraction bits ({f}) = {total} exceeds {PRECISION_BITS}: CKKS "
                         f"decodes to float64, so the masked logits would lose the bits the shares need; "
                         f"{lower}")
    noiseless = v["sigma_gnmax"] == 0 or (v["threshold"] > 0 and v["sigma_threshold"] == 0)
    if noiseless and not math.isinf(v["budget_eps"]):
        which = "sigma_gnmax" if v["sigma_gnmax"] == 0 else "sigma_threshold"
        raise ParamError(PARAMS[which], f"{at}{n[which]}: is 0, which gives no differential privacy "
                         f"(infinite epsilon); {n['budget_eps']} inf runs without privacy on purpose")
