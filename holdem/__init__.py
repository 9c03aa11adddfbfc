"""holdem: the poker domain (`pokerbench`, `table`, `tools`, `equity`, `chat`, `rowgen`), the slime
plug-ins (`generate_with_holdem`: tool-calling rollout, layered reward, metrics), the PokerBench
data stage (`holdem.data`) and offline evaluation (`holdem.eval`)."""
