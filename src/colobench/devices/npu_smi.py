"""`npu-smi` output, parsed by each layout's rules: the `info` table, `-t <type>` key/value
reports, and `-m` (the chip map).

Real outputs differ by chip, driver and npu-smi version (see tests/fixtures/npu_smi, copied with
their sources from real machines and the vendor's documents). What the parsers rely on:

- `npu-smi info`: a box table of `|`-separated groups. Each device takes two rows: the first
  holds the NPU id and name, health, and the values under the first header line (`Power(W)
  Temp(C) [Hugepages-Usage(page)]`); the second the chip id (and a `Device` or `Phy-ID`
  column on 310 and A3 tables), the bus id, and the values under the second header line
  (`AICore(%)` or `NPU Util(%)`, `Memory-Usage(MB)`, `[HBM-Usage(MB)]`). Columns are read by
  their header names, so old tables without Hugepages, 310 tables without HBM and the 950 table
  (`NPU ID | Name` in two groups, no chip column) all parse. An NPU id may have several chips
  (310 cards: 4; 310P Duo and A3: 2): each chip is its own row pair. A `-` value is unknown; an
  A3 prints power once per NPU id (its second chip shows `-`), so that figure is the card's.
  After the device rows a second table lists processes: NPU id, chip, process id (and on A3
  `Process id in container`), name and memory in MB: each process's own HBM on a shared card.
- `npu-smi info -t usages|common|power|temp|memory|board -i <npu id>`: `Key : value` lines.
  Chips of one NPU id are blocks separated by blank lines; `Chip ID` opens a block in `common`
  and closes it in `usages`. A block named `Chip Name : mcu` is the card's microcontroller: its
  temperature and `NPU Real-time Power(W)` are card-level (on a 310P Duo the only power
  reading, shared by both chips). Key spellings vary (`Temperature(C)`, `NPU Temperature (C)`):
  keys are compared without spaces and case.
- `npu-smi info -m`: `NPU ID  Chip ID  Chip Logic ID  Chip Name`; logic id `-` is a chip that
  runs no work (the MCU). The logic id is what the runtime numbers devices by
  (`ASCEND_RT_VISIBLE_DEVICES` selects logic ids; torch's `npu:k` is the k-th visible one).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

_NUMBER = re.compile(r"^[-+]?\d+(?:\.\d+)?$")
_PAIR = re.compile(r"^(\S+)\s*/\s*(\S+)$")
_VALUE = re.compile(r"\S+\s*/\s*\S+|\S+")
_HEADER_FIELD = re.compile(r"\S[^()|]*?\([^)]*\)")
_BUS_ID = re.compile(r"^[0-9A-Fa-fx]{4}:[0-9A-Fa-fx]{2}:[0-9A-Fa-fx]{2}\.[0-9A-Fa-fx]$")
_HEALTH = ("OK", "Warning", "Alarm", "Critical", "NA", "UNKNOWN", "Unknown")


def _num(text: str | None) -> float | None:
    return float(text) if text is not None and _NUMBER.match(text) else None


def _int(text: str | None) -> int | None:
    value = _num(text)
    return int(value) if value is not None else None


def key_name(text: str) -> str:
    """A key compared without spaces and case: `NPU Temperature (C)` == `NPU Temperature(C)`."""
    return re.sub(r"\s+", "", text).lower()


@dataclass
class ChipRow:
    """One chip of the `npu-smi info` table (MB as printed; None where the table has no value)."""

    npu_id: int
    chip_id: int
    name: str
    health: str | None = None
    device: int | None = None  # 310 tables: the chip's device number
    phy_id: int | None = None  # A3 tables: the chip's physical id
    bus_id: str | None = None
    power_w: float | None = None
    power_is_card_level: bool = False  # one reading for every chip of the NPU id (A3)
    temp_c: float | None = None
    aicore_pct: float | None = None
    npu_util_pct: float | None = None
    hugepages_used: int | None = None
    hugepages_total: int | None = None
    memory_used_mb: int | None = None  # DDR (Memory-Usage)
    memory_total_mb: int | None = None
    hbm_used_mb: int | None = None
    hbm_total_mb: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ProcessRow:
    npu_id: int
    chip_id: int
    pid: int
    name: str
    memory_mb: int
    pid_in_container: int | None = None


@dataclass
class InfoTable:
    version: str | None = None
    chips: list[ChipRow] = field(default_factory=list)
    processes: list[ProcessRow] = field(default_factory=list)

    def chip(self, npu_id: int, chip_id: int) -> ChipRow | None:
        return next((c for c in self.chips if c.npu_id == npu_id and c.chip_id == chip_id), None)


def _groups(line: str) -> list[str]:
    """The `|`-separated cells of a table line (a row cut short keeps what it has)."""
    body = line.strip()
    if not body.startswith("|"):
        return []
    cells = body[1:].split("|")
    if body.endswith("|"):
        cells = cells[:-1]
    return [c.strip() for c in cells]


def _is_rule(line: str) -> bool:
    s = line.strip()
    return bool(s) and set(s) <= set("+-=|")


def _values(cell: str) -> list[str]:
    return _VALUE.findall(cell)


def _assign(chip: ChipRow, header: str, value: str) -> None:
    """One value under its header name."""
    key = key_name(header)
    pair = _PAIR.match(value)
    used, total = (_int(pair.group(1)), _int(pair.group(2))) if pair else (None, None)
    if key == "power(w)":
        chip.power_w = _num(value)
    elif key == "temp(c)":
        chip.temp_c = _num(value)
    elif key == "aicore(%)":
        chip.aicore_pct = _num(value)
    elif key in ("npuutil(%)", "npuutilization(%)"):
        chip.npu_util_pct = _num(value)
    elif key == "hugepages-usage(page)":
        chip.hugepages_used, chip.hugepages_total = used, total
    elif key == "memory-usage(mb)":
        chip.memory_used_mb, chip.memory_total_mb = used, total
    elif key == "hbm-usage(mb)":
        chip.hbm_used_mb, chip.hbm_total_mb = used, total


def parse_info(text: str) -> InfoTable:
    """The `npu-smi info` table: every chip row pair, and the process table."""
    table = InfoTable()
    lines = text.splitlines()
    version = re.search(r"npu-smi\s+(\S+)\s+Version:\s*(\S+)", text)
    if version:
        table.version = version.group(2)
    header1: list[str] | None = None  # per group: the header text of the device table's two lines
    header2: list[str] | None = None
    health_col = None
    pending: ChipRow | None = None
    proc_cols: dict[str, int] | None = None
    for line in lines:
        if _is_rule(line) or "npu-smi" in line and "Version" in line:
            continue
        cells = _groups(line)
        if not cells:
            continue
        joined = " ".join(cells)
        if "Process id" in joined and "Process name" in joined:
            proc_cols = {key_name(c): k for k, c in enumerate(cells)}
            pending = None
            continue
        if proc_cols is not None:
            _process_row(table, cells, proc_cols)
            continue
        if header1 is None and any(c.startswith("NPU") for c in cells[:2]) and "Health" in joined:
            header1 = cells
            health_col = next(k for k, c in enumerate(cells) if c.startswith("Health"))
            continue
        if header1 is not None and header2 is None and health_col is not None and len(cells) > health_col \
                and cells[health_col].startswith("Bus-Id"):
            header2 = cells
            continue
        if header1 is None or header2 is None or health_col is None or len(cells) <= health_col:
            continue
        ids = " ".join(cells[:health_col]).split()
        status = cells[health_col]
        if status in _HEALTH or (status and not _BUS_ID.match(status) and pending is None and ids):
            if not ids or not ids[0].isdigit():
                continue
            pending = ChipRow(npu_id=int(ids[0]), chip_id=0, name=" ".join(ids[1:]), health=status)
            for header, cell in zip(header1[health_col + 1:], cells[health_col + 1:]):
                for name, value in zip(_HEADER_FIELD.findall(header), _values(cell)):
                    _assign(pending, name, value)
            continue
        if pending is not None:  # the second row of a chip: chip (and device / phy id), bus id, values
            columns = " ".join(header2[:health_col]).split()
            for name, value in zip(columns, ids):
                if name == "Chip":
                    pending.chip_id = int(value) if value.isdigit() else 0
                elif name == "Device":
                    pending.device = _int(value)
                elif name.startswith("Phy"):
                    pending.phy_id = _int(value)
            pending.bus_id = status if _BUS_ID.match(status) else None
            for header, cell in zip(header2[health_col + 1:], cells[health_col + 1:]):
                for name, value in zip(_HEADER_FIELD.findall(header), _values(cell)):
                    _assign(pending, name, value)
            table.chips.append(pending)
            pending = None
    if pending is not None:  # a table cut short after a chip's first row
        table.chips.append(pending)
    _card_level_power(table)
    return table


def _card_level_power(table: InfoTable) -> None:
    """Where one chip of an NPU id shows power and its siblings show `-`, that reading is the
    whole NPU's (A3): every chip of it carries it, marked card-level."""
    by_npu: dict[int, list[ChipRow]] = {}
    for chip in table.chips:
        by_npu.setdefault(chip.npu_id, []).append(chip)
    for chips in by_npu.values():
        readings = [c.power_w for c in chips if c.power_w is not None]
        if len(chips) > 1 and len(readings) == 1:
            for c in chips:
                c.power_w, c.power_is_card_level = readings[0], True


def _process_row(table: InfoTable, cells: list[str], cols: dict[str, int]) -> None:
    if not cells or cells[0].startswith("No running processes"):
        return
    ids = cells[0].split()
    if not ids or not ids[0].isdigit():
        return

    def cell(name: str) -> str | None:
        k = cols.get(name)
        return cells[k] if k is not None and k < len(cells) else None

    pid, memory = _int(cell("processid")), _int(cell("processmemory(mb)"))
    if pid is None or memory is None:
        return
    table.processes.append(ProcessRow(npu_id=int(ids[0]), chip_id=int(ids[1]) if len(ids) > 1 and ids[1].isdigit()
                                      else 0, pid=pid, name=cell("processname") or "", memory_mb=memory,
                                      pid_in_container=_int(cell("processidincontainer"))))


# ---- `-t <type>` reports ---------------------------------------------------------------------------

@dataclass
class KeyValueReport:
    """One `npu-smi info -t <type> -i <npu id>` report: keys per chip, and the card's own (MCU)."""

    npu_id: int | None = None
    chip_count: int | None = None
    chips: dict[int, dict[str, str]] = field(default_factory=dict)  # chip id -> {normalised key: text}
    card: dict[str, str] = field(default_factory=dict)  # header keys and the MCU block
    keys: dict[str, str] = field(default_factory=dict)  # normalised key -> the key as printed


def parse_key_values(text: str) -> KeyValueReport:
    """`Key : value` lines, split into chips by blank lines and `Chip ID` lines."""
    report = KeyValueReport()
    blocks: list[list[tuple[str, str]]] = [[]]
    for line in text.splitlines():
        if not line.strip():
            if blocks[-1]:
                blocks.append([])
            continue
        if ":" not in line:
            continue
        key, _, value = line.partition(":")
        norm = key_name(key)
        report.keys.setdefault(norm, key.strip())
        blocks[-1].append((norm, value.strip()))
    for block in blocks:
        _block(report, block)
    return report


def _block(report: KeyValueReport, block: list[tuple[str, str]]) -> None:
    if not block:
        return
    keys = [k for k, _ in block]
    if "npuid" in keys:  # the header: NPU ID, Chip Count (board reports: everything is card-level)
        for k, v in block:
            report.card[k] = v
        report.npu_id = _int(report.card.get("npuid"))
        report.chip_count = _int(report.card.get("chipcount"))
        return
    if "chipname" in keys and "chipid" not in keys:  # the MCU: card-level readings
        for k, v in block:
            report.card.setdefault(k, v)
        return
    if "chipid" not in keys:  # values without a chip id: the only chip
        report.chips.setdefault(0, {}).update(block)
        return
    opens = keys[0] == "chipid"  # `common` opens a chip with its id; `usages` closes it
    current: dict[str, str] = {}
    for k, v in block:
        if k == "chipid":
            if opens:
                current = report.chips.setdefault(_int(v) or 0, {})
            else:
                report.chips.setdefault(_int(v) or 0, {}).update(current)
                current = {}
            continue
        current[k] = v
    if current and not opens:  # values after the last `Chip ID`: the next chip has no id line
        report.chips.setdefault(max(report.chips, default=-1) + 1, {}).update(current)


# figure -> the keys (normalised) that carry it, in preference order
ALIASES: dict[str, tuple[str, ...]] = {
    "aicore_pct": ("aicoreusagerate(%)", "aicoreusage(%)"),
    "aicpu_pct": ("aicpuusagerate(%)",),
    "aivector_pct": ("aivectorusagerate(%)",),
    "aicube_pct": ("aicubeusagerate(%)",),
    "util_pct": ("npuutilization(%)", "npureal-timeutilization(%)", "chipusagerate(%)"),
    "hbm_used_pct": ("hbmusagerate(%)",),
    "hbm_total_mb": ("hbmcapacity(mb)",),
    "hbm_bw_util_pct": ("hbmbandwidthusagerate(%)",),
    "ddr_bw_util_pct": ("ddrbandwidthusagerate(%)",),
    "ddr_used_pct": ("ddrusagerate(%)", "memoryusagerate(%)"),
    "ddr_total_mb": ("ddrcapacity(mb)",),
    "power_w": ("npureal-timepower(w)", "powerdissipation(w)", "chippower(w)", "power(w)"),
    "temp_c": ("nputemperature(c)", "temperature(c)", "chiptemperature(c)"),
    "hbm_temp_c": ("hbmtemperature(c)",),
    "aicore_freq_mhz": ("aicorecurfreq(mhz)",),
}


def figures(keys: dict[str, str]) -> dict[str, float]:
    """The numeric figures of one chip's (or the card's) keys."""
    out: dict[str, float] = {}
    for name, candidates in ALIASES.items():
        for key in candidates:
            value = _num(keys.get(key))
            if value is not None:
                out[name] = value
                break
    return out


# ---- `-m`: the chip map -------------------------------------------------------------------------------

@dataclass(frozen=True)
class MappedChip:
    npu_id: int
    chip_id: int
    logic_id: int | None  # None: a chip that runs no work (the MCU)
    name: str


def parse_mapping(text: str) -> list[MappedChip]:
    """`npu-smi info -m` rows, read by their header: `NPU ID  Chip ID  Chip Logic ID  Chip Name`
    (910, A3, 310, 310P), or the 950's `NPU ID  Slot ID  Chip ID  Chip Phy-ID  Chip Name`, which has
    no logic id: its chips that run work are numbered in the order listed (`-` rows excepted)."""
    out: list[MappedChip] = []
    columns: list[str] | None = None
    for line in text.splitlines():
        if "NPU ID" in line and "Chip" in line:
            columns = [key_name(c) for c in re.split(r"\s{2,}", line.strip())]
            continue
        parts = line.split()
        if len(parts) < 3 or not parts[0].isdigit():
            continue
        cols = columns or ["npuid", "chipid", "chiplogicid", "chipname"]
        fixed = [c for c in cols if c != "chipname"]
        values = dict(zip(fixed, parts))
        name = " ".join(parts[len(fixed):])
        chip = values.get("chipid", "")
        if not chip.isdigit():
            continue
        if "chiplogicid" in values:
            logic = int(values["chiplogicid"]) if values["chiplogicid"].isdigit() else None
        else:  # no logic id column: the working chips in order (an MCU row has no phy id)
            works = values.get("chipphy-id", "0").isdigit() and name.lower() != "mcu"
            logic = sum(1 for c in out if c.logic_id is not None) if works else None
        out.append(MappedChip(int(parts[0]), int(chip), logic, name))
    return out


# ---- the device map: torch's npu:k -> logic id -> NPU id and chip -----------------------------------

@dataclass(frozen=True)
class NpuChip:
    """Where `npu:<index>` (torch's numbering in a process) really is: the runtime's logic id (after
    `ASCEND_RT_VISIBLE_DEVICES`), the NPU id `npu-smi -i` takes, the chip on it. `assumed`: no
    `npu-smi info -m` was available and the plain 1:1 numbering of a single-chip host was taken."""

    index: int
    logic_id: int
    npu_id: int
    chip_id: int
    name: str = ""
    assumed: bool = False

    @property
    def label(self) -> str:
        return f"npu:{self.index}"


def visible_logic_ids(value: str | None) -> list[int] | None:
    """`ASCEND_RT_VISIBLE_DEVICES` as logic ids (None: unset or unreadable, every chip visible)."""
    if not value or not value.strip():
        return None
    try:
        return [int(v) for v in value.replace(" ", "").split(",") if v != ""]
    except ValueError:
        return None


def chip_for(index: int, mapping: list[MappedChip], visible: str | None = None) -> NpuChip:
    """The chip torch calls `npu:<index>` in a process with `ASCEND_RT_VISIBLE_DEVICES=visible`:
    the index-th visible logic id, placed by the `-m` map (NPU ids need not start at 0, and a
    card may hold several chips). Without a map: logic id = index, NPU id = logic id, chip 0."""
    ids = visible_logic_ids(visible)
    logic = ids[index] if ids is not None and index < len(ids) else index
    for chip in mapping:
        if chip.logic_id == logic:
            return NpuChip(index, logic, chip.npu_id, chip.chip_id, chip.name)
    return NpuChip(index, logic, logic, 0, "", assumed=True)


# ---- saved outputs, merged per chip (`colobench devices --npu-smi FILE ...`) -------------------------

def kind_of_output(text: str) -> str:
    """`info` (the table), `map` (`-m`), `report` (`-t <type>`), or `unknown`."""
    if "Health" in text and "|" in text:
        return "info"
    if re.search(r"Chip\s+Logic\s+ID", text):
        return "map"
    if re.search(r"^\s*NPU ID\s*:", text, re.MULTILINE):
        return "report"
    return "unknown"


def chip_rows(texts: list[str]) -> list[dict[str, Any]]:
    """One row per chip from saved npu-smi outputs of one host (any mix of `info`, `-t ...`
    and `-m`): NPU id, chip, logic id, name, HBM (or DDR) used/total MB, AI Core %, HBM
    bandwidth %, power (and whether card-level), temperature, processes with their memory."""
    rows: dict[tuple[int, int], dict[str, Any]] = {}

    def row(npu: int, chip: int) -> dict[str, Any]:
        return rows.setdefault((npu, chip), {"npu_id": npu, "chip_id": chip})

    for text in texts:
        kind = kind_of_output(text)
        if kind == "info":
            table = parse_info(text)
            for c in table.chips:
                r = row(c.npu_id, c.chip_id)
                hbm = bool(c.hbm_total_mb)
                ddr = not hbm and bool(c.memory_total_mb)
                r.update({k: v for k, v in {
                    "name": c.name or None, "health": c.health, "bus_id": c.bus_id,
                    "memory_kind": "HBM" if hbm else "DDR" if ddr else None,
                    "mem_used_mb": c.hbm_used_mb if hbm else c.memory_used_mb if ddr else None,
                    "mem_total_mb": c.hbm_total_mb if hbm else c.memory_total_mb if ddr else None,
                    "aicore_pct": c.aicore_pct, "util_pct": c.npu_util_pct, "power_w": c.power_w,
                    "power_is_card_level": c.power_is_card_level or None, "temp_c": c.temp_c,
                    "npu_smi_version": table.version}.items() if v is not None})
            for p in table.processes:
                row(p.npu_id, p.chip_id).setdefault("processes", []).append(
                    {"pid": p.pid, "name": p.name, "memory_mb": p.memory_mb,
                     **({"pid_in_container": p.pid_in_container} if p.pid_in_container is not None else {})})
        elif kind == "map":
            for m in parse_mapping(text):
                if m.logic_id is not None:
                    row(m.npu_id, m.chip_id).update(logic_id=m.logic_id, chip_name=m.name)
        elif kind == "report":
            report = parse_key_values(text)
            if report.npu_id is None:
                continue
            chips = report.chips or {0: {}}
            card = figures(report.card)
            for chip_id, keys in chips.items():
                r, values = row(report.npu_id, chip_id), figures(keys)
                for key in ("aicore_pct", "aicpu_pct", "hbm_bw_util_pct", "ddr_bw_util_pct", "util_pct", "temp_c"):
                    if key in values:
                        r.setdefault(key, values[key])
                if "power_w" in values:
                    r.setdefault("power_w", values["power_w"])
                elif "power_w" in card:  # the MCU's, or the NPU's report-level reading: the card's
                    shared = len(chips) > 1 or report.chip_count not in (None, 1)
                    r.setdefault("power_w", card["power_w"])
                    if shared:
                        r["power_is_card_level"] = True
                if "mem_total_mb" not in r:
                    total = values.get("hbm_total_mb") or card.get("hbm_total_mb")
                    pct = values.get("hbm_used_pct")
                    if total:
                        r["memory_kind"], r["mem_total_mb"] = "HBM", int(total)
                        if pct is not None:
                            r["mem_used_mb_from_pct"] = int(total * pct / 100)
    for r in rows.values():
        if not r.get("name") and r.get("chip_name"):
            r["name"] = r["chip_name"]
    return [rows[k] for k in sorted(rows)]
