"""The newcomer's CPU demo (profiles/demo.yaml, scripts/demo.sh): its data and its stand-ins for
what needs a GPU, slime or a 16 GB download. Only the demo profile and the tests use it.

    data.py            the shipped data file pokerbench-demo.jsonl (generator and check)
    stages.py          STAND-IN model and convert stages (HF and torch_dist layouts)
    driver.py          STAND-IN for slime's train.py: the rollout-only Ray driver
    rollout.py         one Ray task of the driver: the real holdem generate + reward_func
    policy.py          STAND-IN for Qwen3's sampling: the scripted policy
    sglang_standin.py  STAND-IN for an SGLang server / router (real HTTP, the /generate protocol)
    sample_standin.py  STAND-IN for slime's Sample
    checkpoint.py      the driver's checkpoint-like markers (Megatron layout) and report file
    report.py          the rollout report: figures, summary, readable lines
    faults.py          faults to inject into a running demo chain (kill a node, preempt)
"""
