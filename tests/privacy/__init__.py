"""Tests of capc.privacy (noise, Confident-GNMax, RDP accounting, budget ledger, simulation)."""
