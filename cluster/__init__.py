"""holdem-cluster: profiles -> slime arguments -> Slurm chain -> Ray inside the allocation."""
