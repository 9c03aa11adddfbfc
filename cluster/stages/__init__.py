"""What the chain's stages run and need, beside the plan's core (cluster/plan.py):

    container.py   the profile's `container` section -> srun options / a wrapped step (pyxis, apptainer)
    env.py         each stage's environment (PYTHONPATH, offline switch) and whether its program resolves
    eval.py        the `eval` stage on the submit side: its step, whether eval.json is there, its scores
    wandb.py       W&B for a chain: one run id, --wandb-dir, offline mode and the sync stage
    wandb_sync.py  `python -m cluster.stages.wandb_sync DIR`: upload a chain's offline W&B runs
"""
