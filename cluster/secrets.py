"""Which names hold secrets (WANDB_API_KEY, HF_TOKEN, --sglang-api-key, ...): such values travel only
through the environment, never into a file, argv, a job script, a log or Ray's job table.

ONE rule for every kind of name — environment variables, profile keys, slime flags, the flags and
`NAME=value` words of stage commands (`is_secret_name`):

* A name is split into words at anything but letters and digits and at camelCase humps
  (`WANDB_API_KEY` -> WANDB API KEY, `sglang-admin-api-key`, `apiKey`).
* A name whose last word is PATH, FILE, DIR, ... names *where* a secret is, not the secret
  (`router-tls-key-path`, `HF_TOKEN_FILE`): not a secret.
* Otherwise it is a secret when its words, glued together, contain one of SECRET_WORDS
  (PASSWORD, SECRET, CREDENTIAL, APIKEY, ACCESSKEY, ...), or when its last word is KEY or TOKEN
  and the word before it is not one of NOT_CREDENTIALS — the words that make KEY a field of a
  data set (`input-key`, `reward-key`) and TOKEN a vocabulary token (`fim-pad-token`).

The slime flags this rule marks (from cluster/profile/slime_flags.txt) are `secret_flags()`; a refused
flag or name says which environment variable to export instead (`export_hint`). There is no
minimum length for a secret's value: `value_exposed` finds any non-empty value.
"""
from __future__ import annotations

import re
from functools import lru_cache
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

# Glued into the name (separators removed), any of these makes it a secret.
SECRET_WORDS = ("PASSWORD", "PASSWD", "PASSPHRASE", "SECRET", "CREDENTIAL", "APIKEY", "APITOKEN",
                "ACCESSKEY", "ACCESSTOKEN", "AUTHTOKEN", "PRIVATEKEY", "AUTHORIZATION")
# As the last word, these are secrets unless the word before says otherwise.
CREDENTIAL_NOUNS = ("KEY", "TOKEN")
NOT_CREDENTIALS = frozenset({
    # KEY as the name of a field in a data set (slime's --input-key, --label-key, ...)
    "INPUT", "LABEL", "METADATA", "TOOL", "REWARD", "OUTPUT", "PROMPT", "RESPONSE", "ANSWER", "TEXT",
    "FIELD", "COLUMN", "SORT", "GROUP", "PARTITION", "ROUTING", "CACHE", "PRIMARY", "DICT", "MAP", "JSON",
    # TOKEN as a token of the vocabulary (Megatron's --fim-pad-token, ...)
    "PAD", "EOS", "BOS", "EOD", "UNK", "SEP", "CLS", "MASK", "STOP", "START", "END", "PREFIX", "SUFFIX",
    "MIDDLE", "SPECIAL", "FIM", "IMAGE", "VIDEO", "AUDIO",
    # TOKEN as a unit of text (--sglang-bucket-time-to-first-token, ...-per-token)
    "PER", "EACH", "FIRST", "LAST", "NEXT", "NEW",
})
# A last word that makes the name a reference to a secret (its location), not the secret itself.
REFERENCE_WORDS = frozenset({"PATH", "PATHS", "FILE", "FILES", "FILENAME", "DIR", "DIRS", "SOCK", "SOCKET"})

# Where slime and its tools read a secret from when no flag gives it.
ENV_FOR = {"wandb-key": "WANDB_API_KEY", "wandb-api-key": "WANDB_API_KEY", "wandb_key": "WANDB_API_KEY",
           "hf-token": "HF_TOKEN", "token": "HF_TOKEN", "hf_token": "HF_TOKEN"}

# Values that are secrets whatever name they sit under (well-known token formats).
SECRET_VALUE = re.compile(
    r"(?<![A-Za-z0-9])(?:hf_[A-Za-z0-9]{30,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{40,}"
    r"|sk-[A-Za-z0-9_-]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|AKIA[0-9A-Z]{16})(?![A-Za-z0-9])")

_WORDS = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
_ASSIGNMENT = re.compile(r"(?<![A-Za-z0-9_])([A-Za-z_][A-Za-z0-9_]*)=")


def name_words(name: Any) -> list[str]:
    return [w.upper() for w in _WORDS.findall(str(name))]


def is_secret_name(name: Any) -> bool:
    """True when `name` (an env var, a profile key, a flag with or without dashes) holds a secret."""
    return _is_secret_name(str(name))


@lru_cache(maxsize=8192)  # the plan asks about the same few hundred names on every submission
def _is_secret_name(name: str) -> bool:
    words = name_words(name)
    if not words or words[-1] in REFERENCE_WORDS:
        return False
    glued = "".join(words)
    if any(word in glued for word in SECRET_WORDS):
        return True
    return words[-1] in CREDENTIAL_NOUNS and (len(words) == 1 or words[-2] not in NOT_CREDENTIALS)


def export_hint(name: Any) -> str:
    """What to do instead of writing the secret `name` down: the variable to export."""
    bare = str(name).lstrip("-")
    env = ENV_FOR.get(bare) or ENV_FOR.get(bare.lower()) or re.sub(r"[^A-Za-z0-9]+", "_", bare).upper().strip("_")
    return (f"export {env} in the environment you submit from instead (secrets reach the job through the "
            f"environment only, never through a file or a command line)")


def secret_flags(flag_names: Iterable[str]) -> list[str]:
    """The flags of a flag list (e.g. the pinned slime list) that the rule marks as secrets."""
    return sorted(n for n in flag_names if is_secret_name(n))


def value_exposed(value: str, text: str) -> bool:
    """True when the non-empty secret `value` occurs in `text` as a whole token (not inside a longer
    word of letters and digits). No minimum length: a short secret is still a secret."""
    if not value:
        return False
    pattern = r"(?<![A-Za-z0-9])" + re.escape(value) + r"(?![A-Za-z0-9])"
    return re.search(pattern, text) is not None


def secret_env_values(env: Mapping[str, str]) -> dict[str, str]:
    """name -> value of the environment's secrets (non-empty ones)."""
    return {k: v for k, v in env.items() if v and is_secret_name(k)}


def word_problem(word: str) -> str | None:
    """Why one command-line word (or string value) would expose a secret, or None. Never quotes it."""
    return _word_problem(word)


@lru_cache(maxsize=16384)  # a plan holds the same few hundred words on every submission
def _word_problem(word: str) -> str | None:
    if word.startswith("-"):
        flag = word.lstrip("-").partition("=")[0]
        if flag and is_secret_name(flag):
            return f"passes the secret flag {word.partition('=')[0]}; {export_hint(flag)}"
    if "=" in word:
        for match in _ASSIGNMENT.finditer(word):
            if is_secret_name(match.group(1)):
                return f"sets {match.group(1)}=...; {export_hint(match.group(1))}"
    if SECRET_VALUE.search(word):
        return "holds what looks like an access token (hf_..., ghp_..., sk-...); export it in the environment instead"
    return None


def find_secrets(obj: Any, env_secrets: Mapping[str, str] | None = None, path: str = "",
                 allow_passthrough: bool = True) -> Iterator[tuple[str, str]]:
    """(dotted path, why) for every place in a JSON-like object that names or holds a secret:
    a mapping key that is a secret name with a value, a word passing a secret flag or `NAME=value`,
    a well-known token format, or the value of one of `env_secrets`. The reasons never quote a
    value. A key whose value is empty, None, or only refers to the variable (`$NAME`) passes when
    `allow_passthrough`."""
    found: list[tuple[str, str]] = []
    _find(obj, tuple((env_secrets or {}).items()), (path,) if path else (), allow_passthrough, found)
    return iter(found)


def _dotted(parts: tuple) -> str:
    """('env', 'X', 0) -> 'env.X[0]' (an int is a list index)."""
    return "".join(f"[{p}]" if isinstance(p, int) else p if i == 0 else f".{p}" for i, p in enumerate(parts))


def _find(obj: Any, env_secrets: tuple, parts: tuple, allow_passthrough: bool, found: list) -> None:
    """find_secrets' walk; the dotted path is built only for what it reports."""
    if type(obj) is dict or (not isinstance(obj, (str, list, tuple)) and isinstance(obj, Mapping)):
        for key, value in obj.items():
            if is_secret_name(key) and not (allow_passthrough and _passthrough(key, value)):
                found.append((_dotted(parts + (str(key),)), f"{key} is a secret; {export_hint(key)}"))
            elif value is not None and type(value) not in (int, float, bool):
                _find(value, env_secrets, parts + (str(key),), allow_passthrough, found)
    elif isinstance(obj, str):
        why = word_problem(obj)
        if why:
            found.append((_dotted(parts), why))
            return
        for name, value in env_secrets:
            if value_exposed(value, obj):
                found.append((_dotted(parts), (f"holds the value of {name} from your environment; a secret never "
                                               f"goes into a profile, a file or a command line: remove it ({name} "
                                               f"already reaches the job through the environment)")))
                return
    elif isinstance(obj, (list, tuple)):
        for i, item in enumerate(obj):
            if item is not None and type(item) not in (int, float, bool):
                _find(item, env_secrets, parts + (i,), allow_passthrough, found)


def _passthrough(key: str, value: Any) -> bool:
    return value is None or value is False or value == "" or value in (f"${key}", f"${{{key}}}")
