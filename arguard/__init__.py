"""arguard: a single-host active-response daemon with Wazuh-style rules."""

__version__ = "0.1.0"
