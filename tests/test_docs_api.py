"""docs/plugins/api.md and docs/components.md are tested against the code: every public API name, every
example record's fields, every role and every first-party component option is documented."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from ftx_hookspecs import ROLES, TRAINED_ROLES, ChatExample, ClassificationExample, PreferenceExample, TextExample

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "docs"))

import generate  # noqa: E402

API_DOC = (REPO / "docs" / "plugins" / "api.md").read_text(encoding="utf-8")
RECORDS = API_DOC.split("## Example records", 1)[1].split("## `ftx.api`", 1)[0]


def test_generated_docs_match_the_code(capsys):
    assert generate.main(["--check"]) == 0, capsys.readouterr().out


@pytest.mark.parametrize("record", [ChatExample, TextExample, PreferenceExample, ClassificationExample])
def test_every_record_field_is_documented(record):
    assert f"| `{record.__name__}` |" in RECORDS
    names = [f.name for f in dataclasses.fields(record)]
    names += [n for n, v in vars(record).items() if isinstance(v, property)]
    for name in names:
        assert f"`{name}" in RECORDS, f"docs/plugins/api.md does not document {record.__name__}.{name}"
    assert f'`"{record.kind}"`' in RECORDS


@pytest.mark.parametrize("role", ROLES)
def test_every_role_is_documented_with_whether_it_trains(role):
    row = next((line for line in RECORDS.splitlines() if line.startswith(f"| `{role}` |")), None)
    assert row is not None, f"docs/plugins/api.md has no row for role {role!r}"
    trained = row.split("|")[3].strip()
    assert trained.startswith("yes") == (role in TRAINED_ROLES), row


def test_the_check_fails_when_a_component_option_is_undocumented():
    page = generate.components_text()
    assert not generate.stale_components(page)
    assert generate.stale_components(page.replace("| `r` |", "| `rank` |", 1)) == ["### `dora` (method, ftx-lora)"]
