"""What runs inside the train allocation, one task per node (stdlib only at import time; never
imports the profile language or holdem/):

    spec.py        the typed launch spec (built and checked by the plan) and this task's Slurm identity
    main.py        the node's entry: `python -m cluster.launch --spec launch.json` / `run_node(spec)`
    node.py        Ray head on node 0, workers elsewhere: bring-up, GPU check, fail-fast, teardown
    context.py     one node's launcher state
    job.py         node 0's Ray job: submit, follow the driver log, real final state
    render.py      ports, temp dirs, `ray start` argv/env, the entrypoint (pure)
    network.py     this node's address from network.interface / network.cidr; the head reachability check
    procs.py       the processes this node started: start, find, stop (by PID and tag only)
    api.py         the head's dashboard HTTP API (every call sends the run's token)
    auth.py        per-run Ray token: create (0600), read, delete; RAY_AUTH_MODE always explicit
    ray_logs.py    tails of Ray's node-local session logs kept in the run's log dir on failure
    readiness.py   "all nodes ALIVE with their GPUs", dead-node detection (pure)
    rendezvous.py  files on the shared filesystem: head address, heartbeats, done marker, node logs
    resume.py      which checkpoint a (re)start loads, decided from disk
    watchdog.py    no progress for watchdog.stall_s: dump every process's stack, end or requeue the job
    quarantine.py  a node the launcher blames is left out of the requeued job (bounded)
    evaluate.py    the eval stage's step: export the checkpoint, serve it, run holdem.eval, write eval.json
    preflight.py   the doctor's checks, run on every node before Ray starts
    stage.py       what a Slurm task of a submitit stage runs (pickled: StageCommand, TrainCommand)
"""
