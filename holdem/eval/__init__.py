"""Offline evaluation of a served policy on PokerBench rows (`python -m holdem.eval`).

Modules: `cli` (command line, the run), `client` (HTTP to the server: probe, retrying POST, typed
failures), `run` (one plain-mode episode and the scored prediction), `tools` (one tools-mode
episode: the rollout itself), `score` (the paper's scorer and the strict one), `report`
(aggregates and the printed table). Nothing is imported here, so `holdem.eval.score` stays light.
"""
