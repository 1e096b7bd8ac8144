"""The README's configuration table, generated from Pulumi.yaml so the two never disagree.

    python -m scripts.config_table            # print the table
    python -m scripts.config_table --write    # replace the table in README.md
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
START, END = "<!-- config-table:start -->", "<!-- config-table:end -->"


def default_cell(spec: dict) -> str:
    if "default" not in spec:
        return "**required**"
    default = spec["default"]
    if default == "":
        return "(unset)"
    if isinstance(default, (bool, list)):
        return f"`{json.dumps(default)}`"  # as YAML writes them: true, [], not Python's True
    return f"`{default}`"


def _markdown(text: str) -> str:
    """Escape what a table cell cannot hold; <placeholders> outside code spans would vanish as HTML."""
    parts = text.replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def config_table(project_file: Path = ROOT / "Pulumi.yaml") -> str:
    config = yaml.safe_load(project_file.read_text())["config"]
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, spec in config.items():
        kind = f"{spec['type']} of {spec['items']['type']}" if spec["type"] == "array" else spec["type"]
        description = _markdown(" ".join(spec["description"].split()))
        rows.append(f"| `{key}` | {kind} | {default_cell(spec)} | {description} |")
    return "\n".join(rows)


def readme_table(readme: str) -> str:
    return readme.split(START, 1)[1].split(END, 1)[0].strip()


def main() -> int:
    table = config_table()
    if "--write" in sys.argv[1:]:
        path = ROOT / "README.md"
        text = path.read_text()
        before, rest = text.split(START, 1)
        path.write_text(f"{before}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")
    else:
        print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
