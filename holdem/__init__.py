"""holdem: the slime plug-ins (tool-calling rollout, layered reward, metrics) and PokerBench data."""
