"""What looks like a credential: such env names are refused, and their values never echoed."""

from __future__ import annotations

import re

# TOKEN and SECRET as whole words between underscores, so HF_TOKEN and AWS_SECRET_ACCESS_KEY are
# refused but TOKENIZERS_PARALLELISM and MAX_TOKENS are not.
CREDENTIAL_NAME = re.compile(r"(^|_)(TOKEN|SECRET)(_|$)|PASSWORD|PASSWD|(^|_)KEY$", re.IGNORECASE)


def looks_like_credential(name: str) -> bool:
    return bool(CREDENTIAL_NAME.search(name))


# User info in an https URL (a token as the user, or user:token), or a password in any URL.
URL_CREDENTIALS = re.compile(r"^https?://[^/]*@|^[A-Za-z][A-Za-z0-9+.-]*://[^/@]*:[^/]*@")


def url_has_credentials(url: str) -> bool:
    return bool(URL_CREDENTIALS.search(url))
