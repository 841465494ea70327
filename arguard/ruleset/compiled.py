"""Wazuh's built-in "compiled rules" (`<compiled_rule>`), re-implemented.

The web rules use two of them: `is_simple_http_request` (rule 31108: a request without a query
string is not worth running the attack rules on) and `is_valid_crawler` (rule 31140: the line
starts with a known search-engine crawler address). Both keep Wazuh's exact tests, including
that `is_valid_crawler` looks at the start of the message (the client address of an access log),
not at a decoded field.
"""

from collections.abc import Callable, Mapping

CompiledRule = Callable[[Mapping[str, str], str], bool]

_CRAWLER_PREFIXES = (
    "66.249.",  # Google bot
    "72.14.",  # Feedfetcher-Google
    "209.85.",  # Feedfetcher-Google
    "65.55.",  # MSN/Bing
    "207.46.",  # MSN/Bing
    "74.6.",  # Yahoo
    "72.30.",  # Yahoo
    "67.195.",  # Yahoo
)


def is_simple_http_request(fields: Mapping[str, str], message: str) -> bool:
    url = fields.get("url")
    if url is None:
        return False
    return "?" not in url


def is_valid_crawler(fields: Mapping[str, str], message: str) -> bool:
    return message.startswith(_CRAWLER_PREFIXES)


COMPILED_RULES: dict[str, CompiledRule] = {
    "is_simple_http_request": is_simple_http_request,
    "is_valid_crawler": is_valid_crawler,
}
