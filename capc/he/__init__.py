"""Encrypted inference of CryptoNets-style models on SEAL CKKS (CaPC step 1a).

The querying party (QP) owns the CKKS keys; each answering party (AP) evaluates its own model on the
QP's encrypted query and returns ``Enc(z - r)``, where ``r`` is a fresh statistical mask, plus its
fixed-point share ``b = encode(r, f)``.  The QP decrypts ``z - r`` and takes ``a = encode(z - r, f)``;
then ``a + b = round(2^f z) +- 1`` in Z_2^64.

Typical use::

    plan = compile_model("model.keras")              # AP: Keras model / .keras / frozen .pb
    pub = plan.public_plan.to_bytes()                # AP -> QP: shapes only, no weights
    keys = QueryKeys(PublicPlan.from_bytes(pub), choose_params(plan, load_he_params(path)))
    ev = ModelEvaluator(plan, keys.public_context())  # AP: public context, no secret key
    blob, b = ev.evaluate_masked(keys.encrypt(x), frac_bits=3)
    a = capc.fixedpoint.encode(keys.decrypt_logits(blob), 3)

API:

* :func:`compile_model(model, input_shape=None) <capc.he.compiler.compile_model>` -> :class:`Plan`
  (``input_shape``, ``num_classes``, ``depth``, ``rotations(packing, N)``, ``forward(x)``,
  ``public_plan``), or a :class:`~capc.he.hybrid.HybridPlan` for a model with ReLU / max-pool layers:
  CKKS segments joined by garbled-circuit layers, evaluated one segment per query blob
  (``QueryKeys.encrypt(x, segment=k)``, ``ModelEvaluator.evaluate_masked(blob, f, unmask=m)``,
  ``ModelEvaluator.activation_mask(k, B, f)``).
* :func:`choose_params(plan, he_params, *, packing, hiding_bits, logit_bound, frac_bits)
  <capc.he.params.choose_params>` -> :class:`HESetup`, or :class:`ParameterError` saying what fails
  and proposing parameters; :func:`recommend_params` gives capc's own parameters.
* :class:`QueryKeys(plan, params, packing) <capc.he.keys.QueryKeys>`: ``public_context()``,
  ``encrypt(x)``, ``decrypt_logits(blob)``, ``sizes``.
* :class:`ModelEvaluator(plan, public_context, *, hiding_bits, logit_bound, workers, fast_batch)
  <capc.he.evaluator.ModelEvaluator>`: ``evaluate(query)``, ``evaluate_masked(query, frac_bits)``,
  ``last_hiding`` (statistical hiding the last masked result achieved), ``close()`` (stops the batch
  worker processes; also a context manager).  Batch packing runs on :mod:`capc.he.batch` (exact RNS
  matrix products, squares split over ``workers`` spawned processes: the main module of a program
  that evaluates batches must be import-safe, i.e. guarded by ``if __name__ == "__main__":``).
* :class:`layers.Square`, :class:`layers.Polynomial`: Keras activations the compiler reads exactly.
"""

from capc.he.compiler import compile_model
from capc.he.errors import HEError, ParameterError, UnsupportedModelError
from capc.he.evaluator import ModelEvaluator
from capc.he.keys import QueryKeys
from capc.he.params import HESetup, choose_params, recommend_params
from capc.he.hybrid import HybridPlan, PublicHybridPlan
from capc.he.plan import Plan, PublicPlan

__all__ = ["HEError", "ParameterError", "UnsupportedModelError", "compile_model", "Plan", "PublicPlan", "HybridPlan", "PublicHybridPlan",
           "choose_params", "recommend_params", "HESetup", "QueryKeys", "ModelEvaluator"]
