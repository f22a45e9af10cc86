"""The three CaPC roles as long-running processes: the querying party (QP), which holds the CKKS secret
key and collects labels; each answering party (AP), which evaluates its own model on encrypted queries and
garbles the argmax of its masked logits; and the privacy guardian (PG), which aggregates vote shares,
charges the privacy ledger and garbles the noisy argmax. Protocol steps 1a, 1b, 2, 3 and 4 are functions
of those names in the role modules; every message travels over a mutual-TLS channel from :mod:`capc.net`.
"""
