"""Ascend paths against real material: every npu-smi output in tests/fixtures/npu_smi_real (copied
verbatim from real machines and the vendor's documents; each `.source` says where from) parsed
with expected values written by hand from the text; the device map with NPU ids that do not
start at 0 and device subsets; DCMI with a fake library; the profile analyser on a
torch_npu-shaped trace; the CANN version with a fake torch_npu; peaks by exact chip name."""

from __future__ import annotations

import ctypes
import json
import sys
import types
from pathlib import Path

import pytest

from colobench.analysis.diagnosis.detectors import OOM
from colobench.analysis.profile import EmptyTrace, analyse, load_trace
from colobench.devices.npu_smi import (chip_for, chip_rows, figures, kind_of_output, parse_info, parse_key_values,
                                       parse_mapping)
from colobench.devices.peaks import lookup
from colobench.telemetry import FirstAvailable
from colobench.telemetry.ascend import DcmiSampler, NpuSmiSampler, chip_metrics
from colobench.telemetry.base import SamplerUnavailable

REAL = Path(__file__).parent / "fixtures" / "npu_smi_real"
MB = 2**20


def real(name: str) -> str:
    return (REAL / name).read_text()


def test_every_sample_has_its_source():
    samples = sorted(REAL.glob("*.txt"))
    assert len(samples) == 24
    for path in samples:
        assert path.with_suffix(".source").read_text().startswith("# http"), path.name


# ---- the info table, layout by layout -----------------------------------------------------------------

def _chip(table, npu, chip=0):
    found = table.chip(npu, chip)
    assert found is not None, (npu, chip)
    return found


def test_info_910b1_23_0_rc2():
    t = parse_info(real("01_info_910B1_npu-smi-23.0.rc2.txt"))
    assert t.version == "23.0.rc2" and [c.npu_id for c in t.chips] == [0, 1, 7]  # rows 2-6 elided in the source
    c = _chip(t, 1)
    assert (c.name, c.health, c.power_w, c.temp_c, c.aicore_pct) == ("910B1", "OK", 92.1, 47, 0)
    assert (c.hbm_used_mb, c.hbm_total_mb, c.memory_used_mb, c.memory_total_mb) == (4175, 65536, 0, 0)
    assert (c.hugepages_used, c.hugepages_total, c.bus_id) == (0, 0, "0000:01:00.0")
    assert _chip(t, 7).hbm_used_mb == 4174 and _chip(t, 7).power_w == 92.7


def test_info_910_pro_b_named_910b_has_ddr_and_32gb_hbm():
    t = parse_info(real("04_info_910-ProB-named-910B_npu-smi-24.1.0.txt"))
    assert len(t.chips) == 8 and {c.name for c in t.chips} == {"910B"}
    c = _chip(t, 0)
    assert (c.memory_used_mb, c.memory_total_mb, c.hbm_used_mb, c.hbm_total_mb) == (1197, 13553, 1365, 32768)
    assert (_chip(t, 3).power_w, _chip(t, 3).temp_c, _chip(t, 3).bus_id) == (67.2, 33, "0000:01:00.0")


def test_info_310_with_device_column_and_no_hbm():
    t = parse_info(real("05_info_310_npu-smi-23.0.0_procs.txt"))
    (c,) = t.chips
    assert (c.npu_id, c.chip_id, c.device, c.name, c.power_w, c.temp_c) == (0, 0, 0, "310", 12.8, 61)
    assert (c.hugepages_used, c.hugepages_total, c.memory_used_mb, c.memory_total_mb) == (0, 969, 577, 7759)
    assert c.hbm_total_mb is None and t.processes == []  # "No running processes found in NPU 0"


def test_info_310_four_chips_on_npu_215_old_layout_without_hugepages():
    t = parse_info(real("06_info_310x4chips_npu-smi-20.2.0_npu215.txt"))
    assert t.version == "20.2.0" and [(c.npu_id, c.chip_id, c.device) for c in t.chips] == [
        (215, 0, 0), (215, 1, 1), (215, 2, 2), (215, 3, 3)]
    assert [c.temp_c for c in t.chips] == [56, 57, 57, 55]
    assert [c.bus_id for c in t.chips] == ["0000:DA:00.0", "0000:DC:00.0", "0000:DD:00.0", "0000:DB:00.0"]
    assert all((c.memory_used_mb, c.memory_total_mb, c.hugepages_total) == (2703, 8192, None) for c in t.chips)


def test_info_910a_22_0_3_1():
    t = parse_info(real("08_info_910A_npu-smi-22.0.3.1.txt"))
    assert len(t.chips) == 8 and _chip(t, 3).power_w == 191.7 and _chip(t, 7).bus_id == "0000:3D:00.0"
    assert (_chip(t, 0).hugepages_used, _chip(t, 0).hugepages_total) == (15, 15)
    assert (_chip(t, 2).memory_used_mb, _chip(t, 2).hbm_total_mb) == (1868, 32768)


def test_info_910a_with_32_processes_and_warning_health():
    t = parse_info(real("09_info_910A_npu-smi-24.1.RC2_procs.txt"))
    assert _chip(t, 3).health == "Warning" and _chip(t, 3).power_w == 206.9
    assert _chip(t, 3).memory_total_mb == 15039 and _chip(t, 0).name == "xxx"
    assert len(t.processes) == 32 and {p.memory_mb for p in t.processes} == {686}
    npu2 = sorted(p.pid for p in t.processes if p.npu_id == 2)
    assert npu2 == [37642, 37650, 37658, 37666] and all(p.name == "hlt_host_devmm_" for p in t.processes)


def test_info_910b2_excerpt_cut_mid_row():
    t = parse_info(real("10_info_910B2_npu-smi-24.1.0.3_EXCERPT.txt"))
    assert [c.npu_id for c in t.chips] == [0, 1, 2]
    assert (_chip(t, 1).power_w, _chip(t, 1).hbm_used_mb, _chip(t, 1).bus_id) == (88.7, 3395, "0000:C2:00.0")
    # the last row ends without its closing bar: what it has is read
    assert (_chip(t, 2).bus_id, _chip(t, 2).hbm_used_mb, _chip(t, 2).hbm_total_mb) == ("0000:81:00.0", 3396, 65536)


def test_info_910b4_1_has_64gb():
    t = parse_info(real("11_info_910B4-1_npu-smi-25.2.0_EXCERPT.txt"))
    assert [(c.name, c.hbm_used_mb, c.hbm_total_mb) for c in t.chips] == [("910B4-1", 3197, 65536)] * 2
    assert _chip(t, 0).bus_id == "0000:xx:00.0" and _chip(t, 1).temp_c == 32


def test_info_a3_two_chips_per_npu_id_and_card_level_power():
    t = parse_info(real("12_info_A3-Ascend910_npu-smi-24.1.rc3.7_EXCERPT.txt"))
    a, b = _chip(t, 0, 0), _chip(t, 0, 1)
    assert (a.phy_id, b.phy_id, a.name) == (0, 1, "Ascend910")
    assert (a.hbm_used_mb, b.hbm_used_mb, b.bus_id) == (3397, 3186, "0000:9F:00.0")
    # one reading (178.8 W) for the NPU id, "-" on its second chip: the card's, on both, said so
    assert a.power_w == b.power_w == 178.8 and a.power_is_card_level and b.power_is_card_level
    c = _chip(t, 1, 0)
    assert (c.phy_id, c.power_w, c.power_is_card_level) == (2, 185.4, False)


def test_info_950_documented_layout():
    t = parse_info(real("20_info_950_doc.txt"))
    (c,) = t.chips
    assert (c.npu_id, c.chip_id, c.name, c.power_w, c.temp_c) == (0, 0, "xxx", 204.4, 56)
    assert (c.npu_util_pct, c.aicore_pct, c.hbm_used_mb, c.hbm_total_mb) == (0, None, 4439, 86016)
    assert c.bus_id == "0000:91:00.0" and t.processes == []


def test_process_table_of_a3_with_pid_in_container():
    text = (real("12_info_A3-Ascend910_npu-smi-24.1.rc3.7_EXCERPT.txt").rsplit("| 1     Ascend910", 1)[0]
            + "+===========================+===============+====================================================+\n"
              "| NPU     Chip              | Process id    | Process id in container | Process name   | Process memory(MB) |\n"
              "+===========================+===============+====================================================+\n"
              "| 0       1                 | 4012345       | 88                      | python3        | 30712              |\n")
    t = parse_info(text)
    (p,) = t.processes
    assert (p.npu_id, p.chip_id, p.pid, p.pid_in_container, p.name, p.memory_mb) == (0, 1, 4012345, 88, "python3", 30712)


# ---- -t reports ------------------------------------------------------------------------------------------

def test_usages_910b1():
    r = parse_key_values(real("02_usages_910B1_npu-smi-23.0.rc2.txt"))
    assert (r.npu_id, r.chip_count, list(r.chips)) == (0, 1, [0])
    f = figures(r.chips[0])
    assert (f["hbm_total_mb"], f["hbm_used_pct"], f["aicore_pct"], f["hbm_bw_util_pct"]) == (65536, 4, 0, 0)
    assert "power_w" not in f  # usages never carry power


def test_common_910b1_chip_and_mcu_blocks():
    r = parse_key_values(real("03_common_910B1_npu-smi-23.0.rc2.txt"))
    assert r.npu_id == 1
    f = figures(r.chips[0])
    assert (f["power_w"], f["temp_c"], f["aicore_freq_mhz"], f["hbm_used_pct"]) == (93.4, 46, 800, 4)
    assert figures(r.card)["temp_c"] == 38  # the MCU's temperature is the card's, not the chip's


def test_usages_910b_25_5_1_with_npu_utilization_and_aicube():
    f = figures(parse_key_values(real("14a_usages_910B_25.5.1_telegraf.txt")).chips[0])
    assert (f["util_pct"], f["aicube_pct"], f["hbm_used_pct"], f["aicpu_pct"]) == (0, 0, 5, 0)


def test_power_and_board_910b_25_5_1():
    assert figures(parse_key_values(real("14c_power_910B_25.5.1_telegraf.txt")).chips[0])["power_w"] == 103.5
    board = parse_key_values(real("14d_board_910B_25.5.1_telegraf.txt")).card
    assert (board["softwareversion"], board["firmwareversion"], board["pcideviceid"]) == ("25.5.1", "7.8.0.6.201",
                                                                                         "0xD802")


def test_usages_910a_with_ddr():
    f = figures(parse_key_values(real("15_usages_910A_gpustack-docstring.txt")).chips[0])
    assert (f["ddr_total_mb"], f["ddr_used_pct"], f["hbm_total_mb"]) == (15171, 3, 32768)


def test_common_910_class_with_mcu_power():
    r = parse_key_values(real("17_common_910-class_gpustack-docstring.txt"))
    assert figures(r.chips[0])["power_w"] == 69.0 and figures(r.card) == {"power_w": 45.2, "temp_c": 48}


def test_common_310p_duo_two_chips_card_power():
    r = parse_key_values(real("18_common_310P-Duo_gpustack-docstring.txt"))
    assert (r.npu_id, r.chip_count, sorted(r.chips)) == (1, 2, [0, 1])
    assert [figures(r.chips[k])["temp_c"] for k in (0, 1)] == [60, 59]
    assert all("power_w" not in figures(r.chips[k]) for k in (0, 1))
    assert figures(r.card)["power_w"] == 45.2  # the card's only power reading, shared by both chips


def test_memory_and_power_reports_of_the_950():
    memory = figures(parse_key_values(real("22_memory_950_doc.txt")).card)
    assert (memory["hbm_total_mb"], memory["hbm_temp_c"]) == (131072, 63)
    assert figures(parse_key_values(real("23_power_950_doc.txt")).card)["power_w"] == 296.5


def test_key_spellings_and_usages_with_several_chips():
    """`NPU Temperature (C)` with its space, 310P's DDR bandwidth, and a multi-chip usages report
    whose `Chip ID` closes each chip's block."""
    text = ("NPU ID : 4\nChip Count : 2\n\nAicore Usage Rate(%) : 17\nDDR Bandwidth Usage Rate(%) : 9\n"
            "NPU Temperature (C) : 51\nChip ID : 0\n\nAicore Usage Rate(%) : 23\nDDR Bandwidth Usage Rate(%) : 4\n"
            "NPU Temperature (C) : 49\nChip ID : 1\n")
    r = parse_key_values(text)
    assert figures(r.chips[0]) == {"aicore_pct": 17, "ddr_bw_util_pct": 9, "temp_c": 51}
    assert figures(r.chips[1]) == {"aicore_pct": 23, "ddr_bw_util_pct": 4, "temp_c": 49}


# ---- the chip map -------------------------------------------------------------------------------------------

def test_mapping_of_a_310_card_on_npu_215():
    m = parse_mapping(real("06_info_310x4chips_npu-smi-20.2.0_npu215_mapping-m.txt"))
    assert [(c.npu_id, c.chip_id, c.logic_id, c.name) for c in m] == [(215, k, k, "MiniD") for k in range(4)]
    assert (chip_for(2, m).npu_id, chip_for(2, m).chip_id) == (215, 2)
    # ASCEND_RT_VISIBLE_DEVICES=1,3: torch's npu:1 is logic id 3, the card's fourth chip
    c = chip_for(1, m, "1,3")
    assert (c.logic_id, c.npu_id, c.chip_id, c.label, c.assumed) == (3, 215, 3, "npu:1", False)


def test_mapping_of_a_310p_duo_host_with_npu_ids_1_2_4_5():
    m = parse_mapping(real("19_mapping-m_310P-Duo_gpustack-docstring.txt"))
    assert [(c.npu_id, c.chip_id, c.logic_id) for c in m if c.logic_id is not None] == [
        (1, 0, 0), (1, 1, 1), (2, 0, 2), (2, 1, 3), (4, 0, 4), (4, 1, 5), (5, 0, 6), (5, 1, 7)]
    assert [c.name for c in m if c.logic_id is None] == ["Mcu"] * 4
    assert (chip_for(5, m).npu_id, chip_for(5, m).chip_id) == (4, 1)
    assert (chip_for(0, m, "6,7").npu_id, chip_for(0, m, "6,7").chip_id) == (5, 0)


def test_mapping_of_910a_and_the_950_layout_without_logic_ids():
    m = parse_mapping(real("09_info_910A_npu-smi-24.1.RC2_procs_mapping-m.txt"))
    assert [(c.npu_id, c.logic_id) for c in m] == [(k, k) for k in range(8)] and m[0].name == "Ascend 910A"
    m950 = parse_mapping("NPU ID  Slot ID  Chip ID  Chip Phy-ID  Chip Name\n0  0  0  0  Ascend 950\n"
                         "1  1  0  1  Ascend 950\n1  1  1  -  Mcu\n")
    assert [(c.npu_id, c.chip_id, c.logic_id) for c in m950] == [(0, 0, 0), (1, 0, 1), (1, 1, None)]


def test_without_a_map_the_numbering_is_assumed_and_said():
    c = chip_for(3, [])
    assert (c.logic_id, c.npu_id, c.chip_id, c.assumed) == (3, 3, 0, True)


# ---- `colobench devices --npu-smi` and the samplers ------------------------------------------------------

def test_every_sample_is_recognised():
    for path in REAL.glob("*.txt"):
        assert kind_of_output(path.read_text()) != "unknown", path.name


def test_chip_rows_merge_a_hosts_outputs():
    rows = chip_rows([real("09_info_910A_npu-smi-24.1.RC2_procs.txt"),
                      real("09_info_910A_npu-smi-24.1.RC2_procs_mapping-m.txt"),
                      real("15_usages_910A_gpustack-docstring.txt")])
    assert len(rows) == 8
    r = rows[3]
    assert (r["npu_id"], r["logic_id"], r["memory_kind"], r["mem_used_mb"], r["mem_total_mb"]) == (3, 3, "HBM", 0,
                                                                                                    32768)
    assert (r["power_w"], r["temp_c"], r["health"], len(r["processes"])) == (206.9, 39, "Warning", 4)
    assert rows[0]["hbm_bw_util_pct"] == 0 and "hbm_bw_util_pct" not in rows[1]  # usages of NPU 0 only
    duo = chip_rows([real("18_common_310P-Duo_gpustack-docstring.txt"),
                     real("19_mapping-m_310P-Duo_gpustack-docstring.txt")])
    assert [(r["npu_id"], r["chip_id"], r.get("power_w"), r.get("power_is_card_level")) for r in duo[:2]] == [
        (1, 0, 45.2, True), (1, 1, 45.2, True)]


def test_cli_parses_saved_outputs(tmp_path, capsys, monkeypatch):
    from colobench import cli

    monkeypatch.setattr(sys, "argv", ["colobench", "devices", "--npu-smi",
                                      str(REAL / "12_info_A3-Ascend910_npu-smi-24.1.rc3.7_EXCERPT.txt"), "--json"])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    rows = json.loads(capsys.readouterr().out)
    assert exc.value.code == 0 and [(r["npu_id"], r["chip_id"]) for r in rows] == [(0, 0), (0, 1), (1, 0)]
    assert rows[1]["power_is_card_level"] and rows[1]["mem_used_mb"] == 3186
    junk = tmp_path / "junk.txt"
    junk.write_text("hello")
    monkeypatch.setattr(sys, "argv", ["colobench", "devices", "--npu-smi", str(junk)])
    with pytest.raises(SystemExit) as exc:
        cli.main()
    assert exc.value.code == 2 and "not an npu-smi output" in capsys.readouterr().err


def _a3_outputs(args: list[str]) -> str:
    if args[1:] == ["info"]:
        return real("12_info_A3-Ascend910_npu-smi-24.1.rc3.7_EXCERPT.txt")
    return ("NPU ID : 0\nChip Count : 2\n\nHBM Bandwidth Usage Rate(%) : 61\nAicore Usage Rate(%) : 70\nChip ID : 0\n\n"
            "HBM Bandwidth Usage Rate(%) : 33\nAicore Usage Rate(%) : 40\nChip ID : 1\n")


def test_npu_smi_sampler_reads_the_right_chip_of_an_a3():
    """torch's npu:1 with ASCEND_RT_VISIBLE_DEVICES unset on an A3 is logic id 1: NPU id 0, chip 1."""
    mapping = parse_mapping("NPU ID  Chip ID  Chip Logic ID  Chip Name\n0  0  0  Ascend910\n0  1  1  Ascend910\n"
                            "1  0  2  Ascend910\n")
    calls = []
    sampler = NpuSmiSampler([chip_for(1, mapping)], run=lambda args: calls.append(args) or _a3_outputs(args))
    sampler.start()
    ((label, m),) = sampler.sample()
    assert label == "npu:1"
    assert (m["hbm_bw_util_pct"], m["aicore_pct"], m["mem_used_bytes"]) == (33, 0, 3186 * MB)
    assert m["card_power_w"] == 178.8 and "power_w" not in m  # never a chip's: no invented energy
    assert m["temp_c"] == 36 and ["npu-smi", "info", "-t", "usages", "-i", "0"] in calls


def test_process_memory_per_instance_on_a_shared_card():
    info = parse_info(real("09_info_910A_npu-smi-24.1.RC2_procs.txt"))
    m = chip_metrics(chip_for(0, []), info, None)
    assert m["process_mem_bytes"] == {str(pid): 686 * MB for pid in (37656, 37664, 37640, 37648)}
    assert m["mem_total_bytes"] == 32768 * MB and m["power_w"] == 70.5


class FakeDcmi:
    """libdcmi as ctypes calls it: card list 3 and 4 (one device each, logic ids 0 and 1)."""

    def __init__(self, empty: bool = False):
        self.empty = empty

    def dcmi_init(self):
        return 0

    def dcmi_get_card_list(self, num, ids, n):
        num._obj.value = 2
        ids[0], ids[1] = 3, 4
        return 0

    def dcmi_get_card_id_device_id_from_logicid(self, card, device, logic):
        if logic.value > 1:
            return -8005
        card._obj.value, device._obj.value = 3 + logic.value, 0
        return 0

    def dcmi_get_device_utilization_rate(self, card, dev, kind, out):
        if self.empty:
            return -1
        out._obj.value = {2: 63 + card, 3: 4, 10: 71, 13: 60}[kind]
        return 0

    def dcmi_get_device_power_info(self, card, dev, out):
        out._obj.value = 1234  # tenths of a watt
        return 0 if not self.empty else -1

    def dcmi_get_device_temperature(self, card, dev, out):
        out._obj.value = 42
        return 0 if not self.empty else -1

    def dcmi_get_device_hbm_info(self, card, dev, out):
        out._obj.memory_size, out._obj.memory_usage = 65536, 1024
        return 0 if not self.empty else -1

    def dcmi_get_device_memory_info_v3(self, card, dev, out):
        return -1


def test_dcmi_addresses_the_card_its_logic_id_maps_to():
    chips = [chip_for(k, []) for k in (0, 1)]
    sampler = DcmiSampler(chips, lib=FakeDcmi())
    sampler.start()
    assert sampler.ids == {"npu:0": (3, 0), "npu:1": (4, 0)}
    rows = dict(sampler.sample())
    assert rows["npu:1"]["aicore_pct"] == 67 and rows["npu:0"]["aicore_pct"] == 66
    assert rows["npu:0"]["power_w"] == pytest.approx(123.4) and rows["npu:0"]["mem_total_bytes"] == 65536 * MB
    with pytest.raises(SamplerUnavailable, match="DCMI has no card for npu:2"):
        DcmiSampler([chip_for(2, [])], lib=FakeDcmi()).start()


def test_a_dcmi_that_reads_nothing_hands_over_to_npu_smi():
    mapping = parse_mapping("NPU ID  Chip ID  Chip Logic ID  Chip Name\n0  0  0  A\n0  1  1  A\n")
    chip = chip_for(1, mapping)
    both = FirstAvailable([DcmiSampler([chip], lib=FakeDcmi(empty=True)), NpuSmiSampler([chip], run=_a3_outputs)],
                          empty_ticks=3)
    both.start()
    assert both.name == "dcmi"
    for _ in range(2):
        assert both.sample() == [("npu:1", {})]
    ((_, m),) = both.sample()  # the third empty tick: npu-smi answers instead
    assert both.name == "npu-smi" and m["hbm_bw_util_pct"] == 33 and "returned nothing for 3 samples" in both.note


# ---- profile, versions, peaks, errors ---------------------------------------------------------------------

def _torch_npu_trace(level1: bool = True) -> list[dict]:
    """The shape torch_npu exports (a plain list; string ts; device tasks without cat in the
    `Ascend Hardware` process; host API calls prefixed by their CANN layer in `CANN`)."""
    hw, cann, py = 1 << 10 | 3, 2 << 10 | 3, 3 << 10
    events = [
        {"ph": "M", "name": "process_name", "pid": hw, "tid": 0, "args": {"name": "Ascend Hardware"}},
        {"ph": "M", "name": "process_name", "pid": cann, "tid": 0, "args": {"name": "CANN"}},
        {"ph": "M", "name": "process_name", "pid": py, "tid": 0, "args": {"name": "Python"}},
        {"ph": "X", "name": "aten::mm", "cat": "cpu_op", "pid": py, "tid": 7, "ts": "1699529623100000.000", "dur": 400.0},
        {"ph": "X", "name": "MatMulV2", "pid": hw, "tid": 3, "ts": "1699529623100100.000", "dur": 100,
         "args": {"Task Type": "AI_CORE", "Physic Stream Id": 3}},
        {"ph": "X", "name": "Add", "pid": hw, "tid": 3, "ts": "1699529623100300.000", "dur": 50,
         "args": {"Task Type": "AI_VECTOR_CORE", "Stream Id": 3}},
        {"ph": "X", "name": "MatMulV2", "pid": hw, "tid": 3, "ts": "1699529623100400.000", "dur": 100, "args": {}},
    ]
    if level1:
        events += [{"ph": "X", "name": "AscendCL@aclnnMatmul", "pid": cann, "tid": 7, "ts": "1699529623100050.000",
                    "dur": 20.0},
                   {"ph": "X", "name": "AscendCL@aclnnAdd", "pid": cann, "tid": 7, "ts": "1699529623100250.000",
                    "dur": 10.0},
                   {"ph": "X", "name": "AscendCL@aclrtSynchronizeStream", "pid": cann, "tid": 7,
                    "ts": "1699529623100500.000", "dur": 5.0}]
    return events


def test_profile_of_a_torch_npu_trace(tmp_path):
    path = tmp_path / "trace_view.json"
    path.write_text(json.dumps(_torch_npu_trace()))
    a = analyse(load_trace(path))
    assert a["basis"] == "device kernels"
    assert a["idle"]["window_us"] == pytest.approx(400) and a["idle"]["busy_us"] == pytest.approx(250)
    assert a["launch"]["count"] == 2 and a["launch"]["total_us"] == pytest.approx(30)  # aclnn calls, not the sync
    assert a["top_ops"][0]["name"] == "MatMulV2" and a["top_ops"][0]["calls"] == 2
    path.write_text(json.dumps(_torch_npu_trace(level1=False)))
    level0 = analyse(load_trace(path))
    assert level0["launch"]["count"] is None and "Level1" in level0["launch"]["unavailable"]


def test_an_empty_trace_is_said(tmp_path):
    for content in ("", "[]", json.dumps([{"ph": "M", "name": "process_name", "pid": 1, "args": {"name": "CANN"}}])):
        path = tmp_path / "trace.json"
        path.write_text(content)
        with pytest.raises(EmptyTrace, match="no complete event|holds no"):
            load_trace(path)
    with pytest.raises(EmptyTrace, match="no trace was written"):
        load_trace(tmp_path / "missing.json")


def test_cann_version_from_torch_npu(monkeypatch):
    import torch

    from colobench.devices.npu import cann_version

    fake = types.SimpleNamespace(npu=types.SimpleNamespace(utils=types.SimpleNamespace(
        get_cann_version=lambda module="CANN": {"CANN": "8.0.RC3"}[module])))
    monkeypatch.setattr(torch.version, "cann", "8.1.RC1", raising=False)
    assert cann_version(fake) == "8.1.RC1"  # what `import torch_npu` sets
    monkeypatch.setattr(torch.version, "cann", "not known", raising=False)  # ASCEND_HOME_PATH unset
    assert cann_version(fake) == "8.0.RC3"
    assert cann_version(types.SimpleNamespace()) is None  # an old torch_npu: unknown, not a guess


def test_board_versions_from_npu_smi():
    from colobench.devices.npu import board_versions

    out = board_versions(0, run=lambda args: real("14d_board_910B_25.5.1_telegraf.txt"))
    assert out == {"npu_driver": "25.5.1", "npu_firmware": "7.8.0.6.201"}


@pytest.mark.parametrize("name, expected, memory_gb", [
    ("Ascend910B3", "Ascend 910B3", 64), ("910B4", "Ascend 910B4", 32), ("910B4-1", "Ascend 910B4-1", 64),
    ("Ascend910_9392", "Ascend 910 (A3, per chip)", 64), ("Ascend910A", "Ascend 910", 32),
    ("Ascend310P3", "Ascend 310P3 (per chip)", None), ("310", "Ascend 310", 8),
])
def test_ascend_peaks_by_exact_name(name, expected, memory_gb):
    peak = lookup(name)
    assert peak.name == expected and peak.memory_gb == memory_gb and peak.source


def test_unknown_or_ambiguous_ascend_chips_get_no_peak():
    assert lookup("Ascend910B") is None  # an old 910 ProB or a 910B-series chip: no neighbour's figure
    assert lookup("Ascend950PR") is None and lookup("xxx") is None
    assert lookup("Ascend910B1").bf16_tflops is None  # no public figure: none
    assert lookup("NVIDIA H100 80GB HBM3").memory_bandwidth_gb_s == 3350


def test_cann_out_of_memory_lines_are_recognised():
    text = (Path(__file__).parent / "fixtures" / "cann-log-lines.txt").read_text()
    hits = [line for line in text.splitlines() if not line.startswith("#") and OOM.search(line)]
    assert any("EL0004" in h for h in hits) and any("NPU out of memory" in h for h in hits)
    assert not OOM.search("EI0002: The wait execution of the Notify register times out")
    assert ctypes.sizeof(ctypes.c_int) == 4  # the DCMI fakes rely on C ints
