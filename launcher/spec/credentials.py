"""What looks like a credential: such names are refused in env, and such values never printed.

Two signs: a name (HF_TOKEN, DB_PASS, DATABASE_URL...) whose value is a credential, and a value
shaped like a token of a well-known service (hf_..., ghp_..., AKIA...) wherever it is written.
Standard library only: the runtime may import it.
"""

from __future__ import annotations

import re
from typing import Any

# A name is split into words (HF_TOKEN, hfToken, hf-token: HF + TOKEN) and judged by its words,
# so TOKENIZERS_PARALLELISM, MAX_TOKENS, KEYBOARD and SECRETARY stay plain settings.
_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")
# A word that is, or ends in, one of these names a credential: TOKEN, HFTOKEN, CLIENTSECRET.
# (Not SECRETS: a spec's `secrets:` lists the names of secrets, not their values.)
_WORD_ENDINGS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "PASSPHRASE", "APIKEY",
                 "CREDENTIAL", "CREDENTIALS", "CREDS")
# Whole words that name a credential: DB_PASS, GITHUB_PAT, SENTRY_DSN, BASIC_AUTH, ...
_WORDS = frozenset({"PASS", "PAT", "DSN", "AUTH", "AUTHORIZATION", "COOKIE", "COOKIES", "WEBHOOK",
                    "WEBHOOKS", "SESSIONID", "PASSCODE"})
# Words before TOKEN that make it a tokenizer's token rather than a credential.
_TOKENIZER_WORDS = frozenset({"PAD", "EOS", "BOS", "UNK", "SEP", "CLS", "MASK", "SPECIAL", "START", "END",
                              "STOP", "MAX", "MIN", "NUM", "NEW"})
# Two words in a row: AWS_ACCESS_KEY_ID, PRIVATE_KEY_PATH, DATABASE_URL (URLs that carry a
# password), CONNECTION_STRING, SESSION_ID.
_PAIRS = frozenset({
    ("ACCESS", "KEY"), ("API", "KEY"), ("PRIVATE", "KEY"), ("SECRET", "KEY"), ("SIGNING", "KEY"),
    ("ENCRYPTION", "KEY"), ("MASTER", "KEY"), ("LICENSE", "KEY"), ("KEY", "ID"), ("SESSION", "ID"),
    ("SESSION", "KEY"), ("CONNECTION", "STRING"), ("CONN", "STR"),
    *((db, tail) for db in ("DATABASE", "DB", "POSTGRES", "POSTGRESQL", "PG", "MYSQL", "MONGO",
                            "MONGODB", "REDIS", "AMQP", "RABBITMQ", "BROKER", "CELERY")
      for tail in ("URL", "URI", "DSN")),
})

# Tokens of well-known services: a documented prefix, then a body of the service's alphabet, at
# least as long as a real token's shortest form, so ordinary words (hf_home, sk-learn) stay out.
_TOKEN_SHAPES = {
    r"hf_": r"[A-Za-z0-9]{20,}",  # Hugging Face
    r"sk-": r"[A-Za-z0-9][A-Za-z0-9_-]{19,}",  # OpenAI, Anthropic (sk-ant-...), Stripe
    r"gh[oprsu]_": r"[A-Za-z0-9]{20,}",  # GitHub (ghp_ classic, gho_ OAuth, ghs_ app, ...)
    r"github_pat_": r"[A-Za-z0-9_]{20,}",  # GitHub fine-grained
    r"glpat-": r"[A-Za-z0-9_-]{20,}",  # GitLab
    r"xox[abeoprs]-": r"[A-Za-z0-9-]{10,}",  # Slack
    r"AKIA|ASIA": r"[0-9A-Z]{16}(?![0-9A-Za-z])",  # AWS access key ids (long-lived, temporary)
}
TOKEN = re.compile(r"(?<![A-Za-z0-9])(?:" + "|".join(
    f"(?P<p{i}>{prefix}){body}" for i, (prefix, body) in enumerate(_TOKEN_SHAPES.items())) + ")")
MASK = "***"


def words(name: str) -> list[str]:
    return [w.upper() for w in _WORD.findall(name)]


def _tokenizer_token(parts: list[str], index: int) -> bool:
    """PAD_TOKEN, eos_token_id, MAX_TOKEN: a tokenizer's token, not a credential."""
    before = parts[index - 1] if index else ""
    after = parts[index + 1] if index + 1 < len(parts) else ""
    return before in _TOKENIZER_WORDS or after in ("ID", "IDS", "INDEX")


def looks_like_credential(name: str, *, bare_key: bool = True) -> bool:
    """True for a name whose value is a credential: HF_TOKEN, DB_PASS, DATABASE_URL, apiKey.

    `bare_key` counts a name that merely ends in KEY (WANDB_API_KEY, but also SORT_KEY): right
    for environment variables, too wide for a recipe's settings (text_key, cache_key).
    """
    parts = words(name)
    if any((w.endswith(_WORD_ENDINGS) or w in _WORDS)
           and not (w == "TOKEN" and _tokenizer_token(parts, i)) for i, w in enumerate(parts)):
        return True
    if bare_key and parts[-1:] in (["KEY"], ["SESSION"]):
        return True
    if len(parts) > 1 and "PWD" in parts:
        return True  # PWD alone is the shell's working directory, DB_PWD a password
    return any(pair in _PAIRS for pair in zip(parts, parts[1:]))


def has_token(text: str) -> bool:
    return TOKEN.search(text) is not None


def mask_tokens(text: str) -> str:
    """`text` with each token shown as its prefix and ***: hf_***, AKIA***."""
    return TOKEN.sub(lambda m: next(p for p in m.groups() if p) + MASK, text)


class Hidden:
    """Stands for a credential's value in a message: its repr says so, and nothing more."""

    def __repr__(self) -> str:
        return "<hidden>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Hidden)

    def __hash__(self) -> int:
        return 0


def masked(value: Any, secret: bool = False) -> Any:
    """A copy of `value` fit to print: values under credential-like keys hidden, tokens masked.

    `secret` says that `value` itself sits under a credential-like key.
    """
    if secret:
        return Hidden()
    if isinstance(value, str):
        return mask_tokens(value)
    if isinstance(value, dict):
        return {mask_tokens(k) if isinstance(k, str) else k:
                masked(v, isinstance(k, str) and looks_like_credential(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def secret_path(path: tuple[str | int, ...]) -> bool:
    """True when a key on `path` looks like a credential: what lies below it is its value."""
    return any(isinstance(key, str) and looks_like_credential(key) for key in path)


# User info in an https URL (a token as the user, or user:token), or a password in any URL.
URL_CREDENTIALS = re.compile(r"^https?://[^/]*@|^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/]*@")


def url_has_credentials(url: str) -> bool:
    return bool(URL_CREDENTIALS.search(url))


# A query or fragment in a URL with a scheme: CI remotes put opaque tokens there (?access_token=).
URL_QUERY = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^?#]*[?#]")


def url_has_query(url: str) -> bool:
    return bool(URL_QUERY.search(url))
