"""Which names hold secrets (WANDB_API_KEY, HF_TOKEN, ...): such values travel only through the
environment, never into a file, argv, a job script or Ray's job table. One rule for all of them."""
from __future__ import annotations

SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIAL")


def is_secret_name(name: str) -> bool:
    upper = str(name).upper()
    return any(word in upper for word in SECRET_WORDS)
