"""What looks like a credential: such env names are refused, and their values never echoed."""

from __future__ import annotations

import re

# TOKEN and SECRET as whole words between underscores, so HF_TOKEN and AWS_SECRET_ACCESS_KEY are
# refused but TOKENIZERS_PARALLELISM and MAX_TOKENS are not.
CREDENTIAL_NAME = re.compile(r"(^|_)(TOKEN|SECRET)(_|$)|PASSWORD|PASSWD|(^|_)KEY$", re.IGNORECASE)


def looks_like_credential(name: str) -> bool:
    return bool(CREDENTIAL_NAME.search(name))
