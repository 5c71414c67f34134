"""Access control files in the seed's forms, and the decisions made from them."""

from __future__ import annotations

from pathlib import Path

import pytest

from racs.access import (
    AccessPolicy,
    load_atr_map,
    load_filters,
    load_reader_names,
    load_seid_table,
    load_serial_map,
    load_users,
)
from racs.errors import BadParameterError, CommandCode, ConfigError, UnauthorizedError

PAYCARD = """//////////////////////////////////
***********paycard.txt***********
/////////////////////////////////
// AID or default   no=White_List yes=Black_List #SN  list_of_SN
325041592E5359532E4444463031  no  3 pascal client admin
A0000000041010                yes 1 mallory
default                       no  1 admin
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_users_table(tmp_path: Path) -> None:
    users = load_users(
        write(tmp_path, "users.txt", "// user #SEID list\nclient 2 999 0\nroot -1\n")
    )
    assert users == {"client": frozenset({"999", "0"}), "root": frozenset({"*"})}
    policy = AccessPolicy(users=users)
    assert policy.visible_seids("client", ["0", "1", "999"]) == ["0", "999"]
    assert policy.visible_seids("root", ["0", "1"]) == ["0", "1"]
    assert policy.visible_seids("nobody", ["0"]) == []
    with pytest.raises(UnauthorizedError, match="user client may not use SEID 1"):
        policy.check_seid("client", "1", True, CommandCode.POWERON)
    with pytest.raises(BadParameterError):
        policy.check_seid("client", "7", False, CommandCode.POWERON)


def test_seid_table_white_and_black_lists(tmp_path: Path) -> None:
    rules = load_seid_table(write(tmp_path, "paycard.txt", PAYCARD))
    policy = AccessPolicy(seid_tables={"paycard": rules})
    ppse = bytes.fromhex("325041592E5359532E4444463031")
    policy.check_select("client", "paycard", ppse)
    with pytest.raises(UnauthorizedError, match="may not select AID"):
        policy.check_select("eve", "paycard", ppse)
    policy.check_select("eve", "paycard", bytes.fromhex("A0000000041010"))  # black list
    with pytest.raises(UnauthorizedError):
        policy.check_select("mallory", "paycard", bytes.fromhex("A0000000041010"))
    policy.check_select("admin", "paycard", bytes.fromhex("A000000099"))  # default line
    with pytest.raises(UnauthorizedError):
        policy.check_select("client", "paycard", bytes.fromhex("A000000099"))


def test_no_table_falls_back_to_se_default_access() -> None:
    AccessPolicy(se_default_access=True).check_select("x", "s", b"\xa0")
    with pytest.raises(UnauthorizedError):
        AccessPolicy(se_default_access=False).check_select("x", "s", b"\xa0")


def test_apdu_filters_first_match_wins(tmp_path: Path) -> None:
    filters = load_filters(
        write(
            tmp_path,
            "filters.txt",
            "// action mask prefix qualifiers\n"
            "allow FFFF 80E6 user=admin\n"
            "deny  FFFF 80E6\n"
            "deny  FF00FF00 00000100 seid=s1 aid=A0000000041010\n"
            "deny  00 00 aid=none\n",
        )
    )
    policy = AccessPolicy(filters=filters)
    policy.check_apdu("admin", "s1", b"\xa0", bytes.fromhex("80E60C00"))
    with pytest.raises(UnauthorizedError, match="blocked by a filter"):
        policy.check_apdu("alice", "s1", b"\xa0", bytes.fromhex("80E60C00"))
    aid = bytes.fromhex("A0000000041010")
    with pytest.raises(UnauthorizedError):
        policy.check_apdu("alice", "s1", aid, bytes.fromhex("00B20104"))
    policy.check_apdu("alice", "s2", aid, bytes.fromhex("00B20104"))
    with pytest.raises(UnauthorizedError):
        policy.check_apdu("alice", "s2", None, bytes.fromhex("00B20104"))
    deny_all = AccessPolicy(filter_default_allow=False)
    with pytest.raises(UnauthorizedError):
        deny_all.check_apdu("alice", "s1", aid, bytes.fromhex("00B0000000"))


def test_require_select() -> None:
    with pytest.raises(UnauthorizedError, match="select an application"):
        AccessPolicy(require_select=True).check_apdu("a", "s", None, b"\x00\xb0\x00\x00")


def test_seid_allocation_files(tmp_path: Path) -> None:
    readers = load_reader_names(
        write(tmp_path, "reader.txt", '"SCR3310 Reader"\n"CardMan 5x21-CL"\n')
    )
    assert readers == ["SCR3310 Reader", "CardMan 5x21-CL"]
    serials = load_serial_map(
        write(tmp_path, "readersn.txt", "21120548219311 obelix\n21120837203028 paycard\n")
    )
    assert serials == {"21120548219311": "obelix", "21120837203028": "paycard"}
    atr = load_atr_map(
        write(
            tmp_path,
            "atr.txt",
            "//WENEO\n3BF91800008031FE4580574E454F574156457D A000000003000000\n"
            "//GX40\n3B7D960|00080318065B08311C0C883009000 A000000018434D00\n",
        )
    )
    assert atr[1] == (
        bytes.fromhex("3B7D96000080318065B08311C0C883009000"),
        bytes.fromhex("A000000018434D00"),
    )


@pytest.mark.parametrize(
    ("loader", "text", "message"),
    [
        (load_users, "client 3 999 0\n", "users.txt:1: count '3' does not match 2"),
        (load_users, "lonely\n", "users.txt:1: expected"),
        (load_seid_table, "A000 maybe 1 x\n", "users.txt:1: expected 'AID|default"),
        (load_seid_table, "XYZ no 1 x\n", "'XYZ' is not hex"),
        (load_filters, "allow FF 0000\n", "same, non-zero length"),
        (load_filters, "permit FF 00\n", "expected 'allow|deny"),
        (load_filters, "deny FF 00 color=red\n", "unknown qualifier"),
    ],
)
def test_bad_files_name_file_and_line(
    tmp_path: Path, loader: object, text: str, message: str
) -> None:
    path = write(tmp_path, "users.txt", text)
    with pytest.raises(ConfigError, match=message.replace("|", r"\|")):
        loader(path)  # type: ignore[operator]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_users(tmp_path / "absent.txt")
