"""The setup messages of the nftables action — its table, sets, chains and rules — encoded
with pyroute2's nftables message classes, as (kind, flags, payload) for a transaction of
arguard.respond.actions.netlink.

Not an action: imported when an nftables action is set up (pyroute2 is a kernel library,
which `check-config` and `logtest` never load).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pyroute2.netlink.nfnetlink.nftsocket import (
    NFT_MSG_NEWCHAIN,
    NFT_MSG_NEWRULE,
    NFT_MSG_NEWSET,
    NFT_MSG_NEWTABLE,
    nft_chain_msg,
    nft_rule_msg,
    nft_set_msg,
    nft_table_msg,
)
from pyroute2.nftables.expressions import genex

from arguard.respond.actions import netlink

NFPROTO_INET = 1
NFPROTOS = {4: 2, 6: 10}              # NFPROTO_IPV4, NFPROTO_IPV6
ADDRESS_TYPES = {4: (7, 4), 6: (8, 16)}   # (nftables data type, key length)
SOURCE_OFFSET = {4: 12, 6: 8}         # of the source address in the network header
NFT_META_NFPROTO = 15
NFT_META_L4PROTO = 16
NETWORK_HEADER, TRANSPORT_HEADER = 1, 2
NF_DROP, NF_ACCEPT = 0, 1
NFT_REJECT_ICMPX_UNREACH = 2
NFT_REJECT_ICMPX_ADMIN_PROHIBITED = 3
_CREATE = netlink.NLM_F_CREATE
Message = tuple[int, int, bytes]


def _encode(message_class: type, command: int, flags: int, attrs: list) -> Message:
    message = message_class()
    message["nfgen_family"] = NFPROTO_INET
    message["attrs"] = attrs
    message.encode()
    encoded = bytes(message.data[:message["header"]["length"]])
    return netlink.NFNL_SUBSYS_NFTABLES << 8 | command, flags, encoded[16:]  # no nlmsghdr


def table_message(table: str, owner_label: str) -> Message:
    """The table, created when missing; its comment names its owner."""
    return _encode(nft_table_msg, NFT_MSG_NEWTABLE, _CREATE,
                   [("NFTA_TABLE_NAME", table), ("NFTA_TABLE_USERDATA", owner_label)])


def set_message(table: str, name: str, version: int, interval: bool) -> Message:
    """A set of addresses (hash, `flags timeout`) or of prefixes (`flags interval,
    timeout`), created when missing; elements have their own timeouts (none by default)."""
    key_type, key_length = ADDRESS_TYPES[version]
    flags = {"NFT_SET_TIMEOUT", "NFT_SET_INTERVAL"} if interval else {"NFT_SET_TIMEOUT"}
    return _encode(nft_set_msg, NFT_MSG_NEWSET, _CREATE,
                   [("NFTA_SET_TABLE", table), ("NFTA_SET_NAME", name),
                    ("NFTA_SET_FLAGS", flags), ("NFTA_SET_KEY_TYPE", key_type),
                    ("NFTA_SET_KEY_LEN", key_length), ("NFTA_SET_ID", 1)])


def chain_message(table: str, name: str, hook: int, priority: int) -> Message:
    """A filter chain on the hook, policy accept (it only drops), created when missing."""
    return _encode(nft_chain_msg, NFT_MSG_NEWCHAIN, _CREATE,
                   [("NFTA_CHAIN_TABLE", table), ("NFTA_CHAIN_NAME", name),
                    ("NFTA_CHAIN_HOOK", {"attrs": [("NFTA_HOOK_HOOKNUM", hook),
                                                   ("NFTA_HOOK_PRIORITY", priority)]}),
                    ("NFTA_CHAIN_POLICY", NF_ACCEPT), ("NFTA_CHAIN_TYPE", "filter")])


def rule_messages(table: str, command: str, hooks: Sequence[str],
                  sets: Mapping[tuple[str, int], str], ports: Sequence[int], protocol: int,
                  target: str) -> list[Message]:
    """The rules in the chain of each hook, commented with the command's name: one per set,
    `ip saddr @SET counter drop|reject`, or with ports one per set and port, `tcp dport PORT
    ip saddr @SET …` (a port compare before the set lookup: most packets stop there)."""
    messages: list[Message] = []
    for hook in hooks:
        for (_, version), name in sets.items():
            for port in ports or [None]:
                expressions = [_meta(NFT_META_NFPROTO), _equal(bytes([NFPROTOS[version]]))]
                if port is not None:
                    expressions += [_meta(NFT_META_L4PROTO), _equal(bytes([protocol])),
                                    _payload(TRANSPORT_HEADER, 2, 2),
                                    _equal(port.to_bytes(2, "big"))]
                expressions += [_payload(NETWORK_HEADER, SOURCE_OFFSET[version],
                                         ADDRESS_TYPES[version][1]),
                                genex("lookup", {"set": name, "sreg": 1}),
                                genex("counter", {}), *_verdict(target)]
                messages.append(_encode(nft_rule_msg, NFT_MSG_NEWRULE,
                                        _CREATE | netlink.NLM_F_APPEND,
                                        [("NFTA_RULE_TABLE", table), ("NFTA_RULE_CHAIN", hook),
                                         ("NFTA_RULE_EXPRESSIONS", expressions),
                                         ("NFTA_RULE_USERDATA", command)]))
    return messages


def _meta(key: int) -> dict[str, Any]:
    return genex("meta", {"dreg": 1, "key": key})


def _equal(value: bytes) -> dict[str, Any]:
    return genex("cmp", {"sreg": 1, "op": 0, "data": {"attrs": [("NFTA_DATA_VALUE", value)]}})


def _payload(base: int, offset: int, length: int) -> dict[str, Any]:
    return genex("payload", {"dreg": 1, "base": base, "offset": offset, "len": length})


def _verdict(target: str) -> list[dict[str, Any]]:
    if target == "REJECT":
        return [genex("reject", {"type": NFT_REJECT_ICMPX_UNREACH,
                                 "icmp_code": NFT_REJECT_ICMPX_ADMIN_PROHIBITED})]
    return [genex("immediate", {"dreg": 0, "data": {"attrs": [
        ("NFTA_DATA_VERDICT", {"attrs": [("NFTA_VERDICT_CODE", NF_DROP)]})]}})]
