# amaranth: UnusedElaboratable=no
"""Bench of the AXI top (`hw.axi.SpeqAxi`) with cocotbext-axi.

The CPU is an ``AxiLiteMaster`` driven through the host driver
(`host.axi_driver.AsyncAxiDriver`); the DRAM is an AXI4 read RAM holding the
memory images of `golden.perf` at random addresses (some straddling 4 KB
boundaries), answering every burst after a random latency; activations come
from an ``AxiStreamSource`` and results go to an ``AxiStreamSink``. Every
channel pauses at random (AR, R, the four AXI4-Lite channels, both streams).

For every shape: a draft, a verify over T tokens and a baseline pass, each
bit-exact against `golden.arith`, every output exactly once, ``tlast`` on
the last beat only, bits and MACs equal to `golden.perf.pass_cost`, and the
cycles equal to the model's at the port's one-cycle latency plus the cycles
the top reported waiting (WAIT_MEM, WAIT_OUT) whenever the activations came
without pauses. Also: the ID and configuration registers, tables read back,
SLVERR on unmapped addresses and read-only registers, NO_TABLE before the
tables, BAD_OP for a TABLE op, and READ_ERROR for a read the RAM fails.

``axi_kv_write``: KV_WRITE through the master's write channels into a
cocotbext-axi write RAM sharing the read RAM's memory (AW, W and B pausing
at random): new keys and values of a few positions into KV cache images;
the memory then holds `golden.perf.kv_images` of the updated cache in both
planes, word for word, and a kv pass over the written images gives the
golden results; CYCLES minus WAIT_MEM is `golden.perf.kv_write_cycles`; a
write the RAM fails answers READ_ERROR.

``axi_exact`` (Verilator, in the same simulation as ``axi_passes``): behind
`FixedLatencyRam`, a slave of exact timing, every pass' CYCLES, WAIT_MEM and
burst count equal `golden.axi_perf.axi_pass_cost`'s, at read latencies 1, 8
and 32, and every KV_WRITE's CYCLES, WAIT_MEM and writes equal
`golden.axi_perf.axi_kv_write_cost`'s at the same write latencies.
``axi_latency`` runs ``bench/axi_latency.py``'s table.

Knobs: ``SEED``; ``SHAPES`` (a count of random shapes, or a JSON list of
[N, K, T]); ``KV_WRITES`` (commands of ``axi_kv_write``); every failure
names the seed.
"""

from collections import deque
import json
import logging
import os
from pathlib import Path
import time

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, Timer, with_timeout
from cocotb.utils import get_sim_time
from cocotbext.axi import (AxiLiteBus, AxiLiteMaster, AxiRamRead, AxiRamWrite, AxiReadBus,
                           AxiResp, AxiStreamBus, AxiStreamFrame, AxiStreamSink,
                           AxiStreamSource, AxiWriteBus)

import pytest

from golden import arith, axi_perf, perf, speq16
from host.axi_driver import AsyncAxiDriver, DriverError, activation_beats, gather_results
from hw.axi import ID, VERSION, AxiConfig, SpeqAxi
from hw.config import SpeqConfig
from hw.controller import Error, Op
from hw.regmap import register_map
from tb import drive, manifest_images, runner


TOPLEVEL = "speq_axi"
CLOCK_NS = 10
#: Bytes of the bench's RAM.
RAM_BYTES = 1 << 16


def _top(config, axi):
    return SpeqAxi(SpeqConfig(**config), AxiConfig(**axi))


class LatencyRam(AxiRamRead):
    """cocotbext-axi's read RAM, answering each burst ``latency()`` cycles
    after its AR (in order, pipelined: bursts overlap their latencies)."""

    def __init__(self, *args, latency, **kwargs):
        self._latency = latency
        self.in_flight = self.most_in_flight = 0    # bursts asked for and not yet answered
        super().__init__(*args, **kwargs)

    async def _read(self, address, length):
        # A read past the RAM fails (cocotbext-axi's RAM would wrap around).
        if address + length > self.size:
            raise ValueError(f"read of {length} bytes at {address:#x}, past the RAM")
        return self.read(address, length)

    async def _process_read(self):
        queue = Queue()
        cocotb.start_soon(self._respond(queue))
        due = 0
        while True:
            ar = await self.ar_channel.recv()
            now = get_sim_time("ns")
            due = max(due, now + CLOCK_NS * self._latency())
            queue.put_nowait((due, ar))
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)

    async def _respond(self, queue):
        while True:
            due, ar = await queue.get()
            now = get_sim_time("ns")
            if due > now:
                await Timer(due - now, "ns")
            addr, length = int(ar.araddr), int(ar.arlen) + 1
            size = 1 << int(ar.arsize)
            assert size == self.byte_lanes, f"arsize {int(ar.arsize)}"
            assert int(ar.arburst) == 1, "not an INCR burst"
            assert (addr & 0xFFF) + size * length <= 0x1000, f"burst crosses 4 KB at {addr:#x}"
            for beat in range(length):
                r = self.r_channel._transaction_obj()
                r.rid, r.rlast, r.rresp = int(ar.arid), beat == length - 1, AxiResp.OKAY
                try:
                    data = await self._read(addr + size * beat, size)
                except Exception:
                    data, r.rresp = bytes(size), AxiResp.SLVERR
                r.rdata = int.from_bytes(data, "little")
                await self.r_channel.send(r)
            self.in_flight -= 1


class WriteRam(AxiRamWrite):
    """cocotbext-axi's write RAM on another RAM's memory; a write past the
    RAM answers SLVERR (cocotbext-axi's memory would fail otherwise)."""

    async def _write(self, address, data):
        if address + len(data) > self.size:
            raise ValueError(f"write of {len(data)} bytes at {address:#x}, past the RAM")
        self.write(address, data)


class FixedLatencyRam:
    """An AXI4 slave of exact timing, for the cycle model
    (`golden.axi_perf`): ARREADY always high; a burst's first R beat
    ``latency`` cycles after its AR handshake, or the cycle after the
    previous burst's last beat if that is later; then one beat a cycle.
    Writes (where the top has write channels): AWREADY and WREADY always
    high, every write a single beat with its AW and W together, its B
    response ``latency`` cycles after their handshake.

    cocotbext-axi's RAM goes through queues and coroutines whose delays are
    not exactly a given number of cycles; this one drives the channels
    itself, at the falling edge, for the next rising one.
    """

    def __init__(self, dut, *, size, latency):
        self.dut, self.size, self.latency = dut, size, latency
        self.mem = bytearray(size)
        self.bursts = self.writes = 0
        self.log = logging.getLogger("cocotb.fixed_latency_ram")
        self.most_in_flight = 0
        self._bursts = deque()
        self._responses = deque()       # (cycle due, BID) of the writes taken
        self.write_log = []             # (AWADDR, AWID) of every write taken
        cocotb.start_soon(self._serve())
        if hasattr(dut, "m_axi_awvalid"):
            cocotb.start_soon(self._serve_writes())

    def write(self, address, data):
        self.mem[address:address + len(data)] = data

    def read(self, address, length):
        return bytes(self.mem[address:address + length])

    def writes_in_flight(self):
        """Writes taken and not yet answered."""
        return len(self._responses)

    async def _serve_writes(self):
        dut = self.dut
        size = len(dut.m_axi_wdata) // 8
        dut.m_axi_awready.value = 1
        dut.m_axi_wready.value = 1
        dut.m_axi_bvalid.value = 0
        responses, cycle = self._responses, 0
        while True:
            await FallingEdge(dut.aclk)
            cycle += 1
            if dut.aresetn.value == 1 and dut.m_axi_awvalid.value == 1:
                assert dut.m_axi_wvalid.value == 1, "AW without its W"
                assert int(dut.m_axi_awlen.value) == 0 and dut.m_axi_wlast.value == 1, \
                    "a write of more than one beat"
                assert 1 << int(dut.m_axi_awsize.value) == size, "awsize"
                assert int(dut.m_axi_awburst.value) == 1, "not an INCR burst"
                addr, strb = int(dut.m_axi_awaddr.value), int(dut.m_axi_wstrb.value)
                assert addr % size == 0 and addr + size <= self.size, f"write at {addr:#x}"
                data = int(dut.m_axi_wdata.value).to_bytes(size, "little")
                for byte in range(size):
                    if strb >> byte & 1:
                        self.mem[addr + byte] = data[byte]
                responses.append((cycle + self.latency, int(dut.m_axi_awid.value)))
                self.write_log.append((addr, int(dut.m_axi_awid.value)))
                self.writes += 1
            elif dut.aresetn.value == 1:
                assert dut.m_axi_wvalid.value == 0, "W without its AW"
            if responses and responses[0][0] <= cycle:
                due, bid = responses.popleft()
                assert due == cycle, "two B responses due in one cycle"
                dut.m_axi_bid.value = bid
                dut.m_axi_bresp.value = 0
                dut.m_axi_bvalid.value = 1
            else:
                dut.m_axi_bvalid.value = 0
            assert dut.m_axi_bready.value == 1, "bready low"

    def pending(self):
        """Bursts taken and not yet answered in full."""
        return list(self._bursts)

    async def _serve(self):
        dut = self.dut
        size = len(dut.m_axi_rdata) // 8
        dut.m_axi_arready.value = 1
        dut.m_axi_rvalid.value = 0
        bursts, r_free, cycle = self._bursts, 0, 0
        while True:
            await FallingEdge(dut.aclk)
            cycle += 1
            # What the master shows now is handshaken at the next rising edge.
            if dut.aresetn.value == 1 and dut.m_axi_arvalid.value == 1:
                addr, length = int(dut.m_axi_araddr.value), int(dut.m_axi_arlen.value) + 1
                assert 1 << int(dut.m_axi_arsize.value) == size, "arsize"
                assert int(dut.m_axi_arburst.value) == 1, "not an INCR burst"
                assert (addr & 0xFFF) + size * length <= 0x1000, f"burst crosses 4 KB at {addr:#x}"
                first = max(cycle + self.latency, r_free)
                r_free = first + length
                bursts.append([first, addr, length, int(dut.m_axi_arid.value), 0])
                self.bursts += 1
                self.most_in_flight = max(self.most_in_flight, len(bursts))
            if bursts and bursts[0][0] <= cycle:
                first, addr, length, rid, beat = burst = bursts[0]
                assert first + beat == cycle
                at = addr + size * beat
                assert at + size <= self.size, f"read at {at:#x}, past the RAM"
                dut.m_axi_rdata.value = int.from_bytes(self.mem[at:at + size], "little")
                dut.m_axi_rid.value = rid
                dut.m_axi_rresp.value = 0
                dut.m_axi_rlast.value = beat == length - 1
                dut.m_axi_rvalid.value = 1
                burst[4] += 1
                if burst[4] == length:
                    bursts.popleft()
            else:
                dut.m_axi_rvalid.value = 0
                dut.m_axi_rlast.value = 0
            assert dut.m_axi_rready.value == 1, "rready low"


def _pauses(rng, p):
    """A pause generator: True (pause) with probability ``p`` each cycle."""
    while True:
        yield bool(rng.random() < p)


_same = drive.same_bits


class Bench:
    def __init__(self, dut, config, axi, seed, ram_bytes=RAM_BYTES, fixed_latency=None):
        """``fixed_latency``: a `FixedLatencyRam` of that latency (settable
        later through ``ram.latency``) instead of cocotbext-axi's RAM, and
        every pass' cycles checked against `golden.axi_perf`."""
        self.dut, self.config, self.axi, self.seed = dut, config, axi, seed
        # The images of axi_passes come from the build manifest's layout
        # (tb.manifest_images), the others' from golden.perf.
        manifest = os.environ.get("MANIFEST")
        self.layout = json.loads(Path(manifest).read_text())["memory_images"] \
            if manifest and fixed_latency is None else None
        self.rng = np.random.default_rng(seed)
        self.latency_range = (1, 24)
        self.wram = None
        if fixed_latency is None:
            self.ram = LatencyRam(AxiReadBus.from_prefix(dut, "m_axi"), dut.aclk, dut.aresetn,
                                  reset_active_level=False, size=ram_bytes,
                                  latency=lambda: int(self.rng.integers(*self.latency_range)))
            if hasattr(dut, "m_axi_awvalid"):
                # KV_WRITE's writes, into the same memory.
                self.wram = WriteRam(AxiWriteBus.from_prefix(dut, "m_axi"), dut.aclk,
                                     dut.aresetn, reset_active_level=False, size=ram_bytes,
                                     mem=self.ram.mem)
        else:
            self.ram = FixedLatencyRam(dut, size=ram_bytes, latency=fixed_latency)
        self.exact = fixed_latency is not None
        self.axil = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.aclk, dut.aresetn,
                                  reset_active_level=False)
        self.source = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis"), dut.aclk,
                                      dut.aresetn, reset_active_level=False,
                                      byte_size=len(dut.s_axis_tdata))
        self.sink = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis"), dut.aclk, dut.aresetn,
                                  reset_active_level=False, byte_size=len(dut.m_axis_tdata))
        for logger in (self.ram.log, self.axil.write_if.log, self.axil.read_if.log,
                       self.source.log, self.sink.log, *([self.wram.log] if self.wram else [])):
            logger.setLevel("WARNING")
        self.driver = AsyncAxiDriver(self.read, self.write)
        self.machine = perf.machine(config)
        self.pes = self.machine["pes"]
        self.summary = {"seed": seed, "passes": 0, "outputs": 0, "refused": 0, "multihead": 0,
                        "modes": {mode: 0 for mode in perf.MODES}, "wait_mem": 0,
                        "wait_out": 0, "cycle_checks": 0, "exact_checks": 0,
                        "images_from_manifest": 0, "kv_writes": 0, "kv_write_positions": 0,
                        "kv_write_exact_checks": 0}

    def fail(self, what):
        return f"{what} (seed {self.seed})"

    async def read(self, offset):
        resp = await with_timeout(self.axil.read(offset, 4), 100 * CLOCK_NS, "ns")
        assert resp.resp == AxiResp.OKAY, self.fail(f"read of {offset:#x}: {resp.resp!r}")
        return int.from_bytes(resp.data, "little")

    async def write(self, offset, value):
        resp = await with_timeout(self.axil.write(offset, value.to_bytes(4, "little")),
                                  100 * CLOCK_NS, "ns")
        assert resp.resp == AxiResp.OKAY, self.fail(f"write of {offset:#x}: {resp.resp!r}")

    def pauses(self, p_bus, p_act, p_out):
        """Pause probabilities: the AXI read channels and the AXI4-Lite
        channels (``p_bus``), the activation source, the result sink."""
        axil = self.axil
        # The fixed-latency slave has no pauses: its timing is the point.
        ram = [] if self.exact else [self.ram.ar_channel, self.ram.r_channel]
        if self.wram is not None:
            ram += [self.wram.aw_channel, self.wram.w_channel, self.wram.b_channel]
        channels = [(channel, p_bus) for channel in (
            *ram, axil.write_if.aw_channel,
            axil.write_if.w_channel, axil.write_if.b_channel, axil.read_if.ar_channel,
            axil.read_if.r_channel)]
        for channel, p in channels + [(self.source, p_act), (self.sink, p_out)]:
            if p:
                channel.set_pause_generator(
                    _pauses(np.random.default_rng(self.rng.integers(1 << 32)), p))
            else:
                channel.set_pause_generator(None)
                # cocotbext-axi leaves a channel as its last pause left it.
                channel.pause = False

    def place(self, images):
        """Write the images to the RAM at random aligned addresses, the first
        one a little before a 4 KB boundary; returns their byte addresses."""
        bus_bytes = self.config.mem_bits // 8
        addrs, at = [], 0x1000 * int(self.rng.integers(1, 4)) - bus_bytes * int(
            self.rng.integers(1, 9))
        for image in images:
            raw = b"".join(word.to_bytes(bus_bytes, "little") for word in image)
            assert at + len(raw) <= self.ram.size, self.fail("the images do not fit the RAM")
            self.ram.write(at, raw)
            addrs.append(at)
            at += len(raw) + bus_bytes * int(self.rng.integers(0, 40))
        return addrs + [0] * (2 - len(addrs))

    def read_words(self, address, count):
        """``count`` memory words from byte ``address`` of the RAM."""
        bus_bytes = self.config.mem_bits // 8
        raw = self.ram.read(address, count * bus_bytes)
        return [int.from_bytes(raw[i:i + bus_bytes], "little")
                for i in range(0, len(raw), bus_bytes)]

    async def run_pass(self, mode, x, w, enc, *, fp16=False, cycle_check=True, wbase=None,
                       heads=1):
        """One pass, checked; ``wbase``: its images are in the RAM there
        (else they are placed first). A multi-head pass (``heads`` =
        `head_groups`): ``x`` is heads x T x K, ``w`` the heads' N x K
        stacked, and Y heads x T x N."""
        t, k = x.shape[-2:]
        n = w.shape[0] // heads
        what = f"{mode} pass N={n} K={k} T={t}" + (f" x {heads} heads" if heads > 1 else "")
        pes, slots, bits = self.pes, self.machine["slots"], self.config.mem_bits
        from_layout = self.layout is not None and wbase is None
        if wbase is None:
            if self.layout is not None:
                # From the manifest alone, as an integrator's driver builds them.
                images = manifest_images.images(
                    self.layout, mode, n, k, words=None if enc is None else enc.words.tolist(),
                    fp16=w.view(np.uint16).tolist(), heads=heads)
            else:
                images = perf.pass_images(mode, w, enc, pes, slots, bits, heads)
            wbase = self.place(images)
        bursts_before = self.ram.bursts if self.exact else 0
        self.source.send_nowait(AxiStreamFrame(activation_beats(x.reshape(-1, k))))
        await self.driver.start(mode, n, k, t, wbase0=wbase[0], wbase1=wbase[1], fp16=fp16,
                                multihead=heads > 1)
        try:
            frame = await with_timeout(self.sink.recv(), 2_000_000 + 400 * n * k * t, "ns")
        except SimTimeoutError:
            status = await self.driver.status()
            raise AssertionError(self.fail(f"{what}: no last result beat in time; {status}"))
        status = await self.driver.wait(polls=1000)
        assert status["error"] == Error.OK.value, self.fail(f"{what} refused: {status}")
        assert not status["rw_clash"], self.fail(f"{what}: a step's read met a write: {status}")
        counters = await self.driver.counters()

        beats = list(frame.tdata)
        users = frame.tuser if isinstance(frame.tuser, list) else [frame.tuser] * len(beats)
        per = pes // heads
        assert len(beats) == -(-n // per) * t, self.fail(
            f"{what}: {len(beats)} result beats up to tlast, want {-(-n // per) * t}")
        assert self.sink.empty(), self.fail(f"{what}: beats after tlast")
        y, y16, seen = gather_results(beats, users, n=n, t=t, pes=pes, heads=heads)
        assert (seen == 1).all(), self.fail(
            f"{what}: outputs seen {seen.min()}..{seen.max()} times, not once")
        if fp16:
            with np.errstate(over="ignore"):
                _same(y16, y.astype(np.float16), self.fail(f"{what}: FP16 results"))
        else:
            assert not y16.view(np.uint16).any(), self.fail(f"{what}: FP16 results unasked")

        cost = perf.pass_cost(mode, n, k, t, mem_latency=1, heads=heads, **self.machine)
        assert (counters["bits"], counters["macs"]) == (cost.bits, cost.macs), self.fail(
            f"{what}: bits {counters['bits']} macs {counters['macs']}, model {cost.bits} "
            f"{cost.macs}")
        waited = counters["wait_mem"] + counters["wait_out"]
        if cycle_check:
            assert counters["cycles"] - waited == cost.cycles, self.fail(
                f"{what}: {counters['cycles']} cycles with {waited} waiting "
                f"({counters}), model {cost.cycles}")
            self.summary["cycle_checks"] += 1
        else:
            assert counters["cycles"] - waited >= cost.cycles, self.fail(f"{what}: {counters}")
        if self.exact:
            model = axi_perf.axi_pass_cost(
                mode, n, k, t, read_latency=self.ram.latency, wbase0=wbase[0], wbase1=wbase[1],
                burst_beats=self.axi.burst_beats, max_outstanding=self.axi.max_outstanding,
                fifo_depth=self.axi.fifo_depth, heads=heads, **self.machine)
            got = {"cycles": counters["cycles"], "wait_mem": counters["wait_mem"],
                   "wait_out": counters["wait_out"], "bursts": self.ram.bursts - bursts_before}
            want = {"cycles": model.cycles, "wait_mem": model.wait_mem, "wait_out": 0,
                    "bursts": model.bursts}
            assert got == want, self.fail(
                f"{what} at read latency {self.ram.latency}: RTL {got}, axi_perf {want}")
            counters["model"], counters["wbase"] = model, wbase
            self.summary["exact_checks"] += 1
        s = self.summary
        s["passes"] += 1
        s["multihead"] += heads > 1
        s["images_from_manifest"] += int(from_layout)
        s["modes"][mode] += 1
        s["outputs"] += heads * n * t
        s["wait_mem"] += counters["wait_mem"]
        s["wait_out"] += counters["wait_out"]
        return y, counters

    async def run_kv_write(self, vt, cache, pos, new, *, wbase=None, cycle_check=True):
        """KV_WRITE of the positions ``pos ..`` of ``cache`` (the values of a
        keys image, capacity x D, or of a values image, D x capacity) with
        ``new`` (T x D FP16), into its images at ``wbase`` (placed first if
        None); ``cache`` is updated. Checks the RAM against
        `golden.perf.kv_images` of the updated cache, word for word in both
        planes, the status and counters (and, behind the fixed-latency
        slave, `golden.axi_perf`'s); returns ``(wbase, counters)``."""
        pes, slots, bits = self.pes, self.machine["slots"], self.config.mem_bits
        n, k = cache.shape
        t, d = new.shape
        what = f"KV_WRITE {'values' if vt else 'keys'} {n}x{k}, positions {pos}..{pos + t - 1}"
        if wbase is None:
            wbase = self.place(perf.kv_images(cache, pes, slots, bits))
        writes_before = self.ram.writes if self.exact else 0
        self.source.send_nowait(AxiStreamFrame(activation_beats(new)))
        await self.driver.start("kv_write", n, k, t, wbase0=wbase[0], wbase1=wbase[1],
                                pos=pos, vt=vt)
        status = await self.driver.wait(polls=20_000)
        assert status["error"] == Error.OK.value and status["op"] == Op.KV_WRITE.value, \
            self.fail(f"{what}: {status}")
        counters = await self.driver.counters()
        if vt:
            cache[:, pos:pos + t] = new.T
        else:
            cache[pos:pos + t] = new
        for plane, image in enumerate(perf.kv_images(cache, pes, slots, bits)):
            got = self.read_words(wbase[plane], len(image))
            bad = [i for i, (a, b) in enumerate(zip(got, image)) if a != b]
            assert not bad, self.fail(
                f"{what}: plane {plane}: {len(bad)} of {len(image)} words differ, first at "
                f"word {bad[0]}: {got[bad[0]]:#x}, want {image[bad[0]]:#x}")
        assert (counters["bits"], counters["macs"], counters["wait_out"]) == (16 * t * d, 0, 0), \
            self.fail(f"{what}: {counters}")
        want = perf.kv_write_cycles(vt, d, t)
        if cycle_check:
            assert counters["cycles"] - counters["wait_mem"] == want, self.fail(
                f"{what}: {counters['cycles']} cycles with {counters['wait_mem']} waiting, "
                f"model {want}")
            self.summary["cycle_checks"] += 1
        if self.exact:
            model = axi_perf.axi_kv_write_cost(vt, d, t, write_latency=self.ram.latency,
                                               max_outstanding=self.axi.max_outstanding)
            got = {"cycles": counters["cycles"], "wait_mem": counters["wait_mem"],
                   "writes": self.ram.writes - writes_before}
            want = {"cycles": model.cycles, "wait_mem": model.wait_mem, "writes": model.writes}
            assert got == want, self.fail(
                f"{what} at write latency {self.ram.latency}: RTL {got}, axi_perf {want}")
            # AWID: the plane the write goes to, and one epoch for all.
            images = perf.kv_images(cache, pes, slots, bits)
            ids = set()
            for addr, awid in self.ram.write_log[writes_before:]:
                plane = awid & 1
                offset = (addr - wbase[plane]) // (bits // 8)
                assert 0 <= offset < len(images[plane]), self.fail(
                    f"{what}: a write at {addr:#x} with AWID {awid:#x}, not in plane {plane}")
                ids.add(awid >> 1)
            assert len(ids) == 1, self.fail(f"{what}: AWID epochs {sorted(ids)}")
            counters["model"] = model
            self.summary["kv_write_exact_checks"] += 1
        self.summary["kv_writes"] += 1
        self.summary["kv_write_positions"] += t
        return wbase, counters

    async def kv_pass(self, vt, cache, written, wbase, what):
        """A kv pass over the images at ``wbase`` as KV_WRITE left them, the
        cache's ``written`` first positions (whole tiles of a keys image,
        whole groups of a values image), bit-exact."""
        pes, slots = self.pes, self.machine["slots"]
        if vt:
            w = cache[:, :4 * -(-written // 4)]
        else:
            w = cache[:perf.kv_cache_rows(written, cache.shape[0], pes, slots)]
        x = self.rng.standard_normal((int(self.rng.integers(1, self.config.tmax + 1)),
                                      w.shape[1])).astype(np.float16)
        y, _ = await self.run_pass("kv", x, w, None, wbase=wbase)
        _same(y, arith.verify_gemm(x, w), self.fail(f"kv pass after {what}"))

    def kv_problem(self, vt, d=None):
        """A KV cache to write into and its new values: ``(cache, pos,
        new)``; FP16 with a few specials, some positions already written."""
        rng, tile = self.rng, self.pes * self.machine["slots"]
        kmax = min(self.config.kmax, 64)
        if d is None:
            d = 4 * int(rng.integers(1, tile // 4 + 1)) if vt else \
                4 * int(rng.integers(1, kmax // 4 + 1))
        capacity = 4 * int(rng.integers(1, kmax // 4 + 1)) if vt else \
            int(rng.integers(1, 3 * tile + 1))

        def fp16(shape):
            u = (rng.standard_normal(shape) * 2).astype(np.float16)
            u.view(np.uint16)[rng.random(shape) < 0.03] = 0x7C00
            u.view(np.uint16)[rng.random(shape) < 0.03] = 0x0001
            return u
        cache = fp16((d, capacity) if vt else (capacity, d))
        t = int(rng.integers(1, min(self.config.tmax, capacity) + 1))
        pos = int(rng.integers(0, capacity - t + 1))
        return cache, pos, fp16((t, d))

    async def refused(self, mode, error, **fields):
        await self.driver.start(mode, fields.get("n", 4), fields.get("k", 8), fields.get("t", 1),
                                wbase0=0, pos=fields.get("pos", 0), vt=fields.get("vt", 0))
        status = await self.driver.wait(polls=200)
        assert status["error"] == error.value, self.fail(
            f"op {mode} {fields}: {status}, want {error.name}")
        self.summary["refused"] += 1


def _shapes(rng, config, count):
    shapes = []
    while len(shapes) < count:
        # The second shape (the result stream paused too) has the most
        # tokens, many rows and a short K: its results come in runs close
        # together that fill the result FIFO, so that WAIT_OUT is tested
        # whatever the seed (N = 7, K = 56 under SEED=7 spread its two runs
        # of 12 results too far apart to fill it).
        second = len(shapes) == 1
        n = int(rng.integers(16 if second else 1, 33))
        k = 4 * int(rng.integers(1, (32 if second else min(64, config.kmax)) // 4 + 1))
        t = config.tmax if second else int(rng.integers(1, config.tmax + 1))
        if n * k * t <= 2_000:
            shapes.append((n, k, t))
    return shapes


async def multihead_passes(bench, heads, shapes):
    """A kv and a kv_draft multi-head pass of ``heads`` heads per shape (N, K,
    T): each head's Y bit-exact against its own product (none if ``heads`` is
    1)."""
    if heads == 1:
        return
    for n, k, t in shapes:
        w = (bench.rng.standard_normal((heads * n, k)) * 0.5).astype(np.float16)
        x = bench.rng.standard_normal((heads, t, k)).astype(np.float16)
        for mode, values in (("kv", w), ("kv_draft", speq16.kv_draft(w))):
            y, _ = await bench.run_pass(mode, x, w, None, heads=heads)
            for q in range(heads):
                _same(y[q], arith.verify_gemm(x[q], values[q * n:(q + 1) * n]),
                      bench.fail(f"{mode} N={n} K={k} T={t}, head {q} of {heads}"))


@cocotb.test()
async def axi_passes(dut):
    config = SpeqConfig(**json.loads(os.environ["ACCEL_CONFIG"]))
    axi = AxiConfig(**json.loads(os.environ["AXI_CONFIG"]))
    seed = runner.seed()
    bench = await _clock_and_reset(dut, lambda: Bench(dut, config, axi, seed))
    driver, rng, summary, regs = bench.driver, bench.rng, bench.summary, register_map()

    # Identification and configuration.
    info = await driver.info()
    want = {"id": ID, "version": VERSION, "rows": config.rows, "cols": config.cols,
            "tmax": config.tmax, "draft_lanes": config.draft_lanes, "kmax": config.kmax,
            "mem_bits": config.mem_bits, "head_groups": config.head_groups}
    assert info == want, bench.fail(f"info {info}, want {want}")

    # Off the map and read-only: SLVERR (reads give 0); the bus goes on.
    mapped = {r.offset for r in regs}
    for offset in (0x05C, 0x07C, 0x0A0, regs.size - 4):
        assert offset not in mapped
        resp = await bench.axil.read(offset, 4)
        assert resp.resp == AxiResp.SLVERR and resp.data == bytes(4), bench.fail(
            f"read of unmapped {offset:#x}: {resp}")
        resp = await bench.axil.write(offset, b"\xff" * 4)
        assert resp.resp == AxiResp.SLVERR, bench.fail(f"write of unmapped {offset:#x}: {resp}")
    for name in ("ID", "CYCLES", "TABLE_LOADED"):
        resp = await bench.axil.write(regs[name].offset, b"\x00" * 4)
        assert resp.resp == AxiResp.SLVERR, bench.fail(f"write of read-only {name}: {resp}")
    assert await bench.read(regs["ID"].offset) == ID, bench.fail("ID changed by a write")

    # Before any table: draft and verify are refused, a TABLE op is no op.
    await bench.refused("draft", Error.NO_TABLE)
    await bench.refused("verify", Error.NO_TABLE)
    await bench.refused(Op.TABLE, Error.BAD_OP)
    await bench.refused(7, Error.BAD_OP)
    await bench.refused("baseline", Error.BAD_K, k=6)

    # The tables read back as written, field by field, also under strobes.
    entries = [{"base": int(rng.integers(0, 128)), "exp": int(rng.integers(-32, 32)),
                "half": int(rng.integers(0, 2)), "zero": int(rng.integers(0, 2))}
               for _ in range(8)]

    class Enc:
        base = [e["base"] for e in entries]
        draft_exp = [e["exp"] for e in entries]
        draft_half = [e["half"] for e in entries]
        draft_zero = [e["zero"] for e in entries]
    await driver.load_table(Enc)
    assert await driver.read_table() == entries, bench.fail("tables do not read back")
    resp = await bench.axil.write(regs["TABLE3"].offset + 2, b"\x03")   # HALF and ZERO only
    assert resp.resp == AxiResp.OKAY
    entries[3].update(half=1, zero=1)
    assert await driver.read_table() == entries, bench.fail("a byte write spilled over")
    assert await bench.read(regs["TABLE_LOADED"].offset) == 0xFF

    # Passes: every other shape with pauses on every channel.
    shapes = json.loads(os.environ.get("SHAPES", "3"))
    shapes = _shapes(rng, config, shapes) if isinstance(shapes, int) else shapes
    for number, (n, k, t) in enumerate(shapes):
        w = (rng.standard_normal((n, k)) * 0.05).astype(np.float16)
        w[rng.random(w.shape) < 0.02] = 0
        x = rng.standard_normal((t, k)).astype(np.float16)
        enc = speq16.encode(w)
        await driver.load_table(enc)
        # Kind 0 (shapes 0, 3, ... from FIRST_KIND 0): no pauses and a fixed latency; 1:
        # random latency and pauses on every channel but the activations; 2:
        # on the activations too. Late activations make a pass longer by
        # cycles no counter reports: the cycle check needs them on time.
        kind = (number + int(os.environ.get("FIRST_KIND", "0"))) % 3
        bench.pauses(0.2 if kind else 0.0, 0.2 if kind == 2 else 0.0, 0.8 if kind else 0.0)
        bench.latency_range = (1, 40) if kind else (6, 7)
        cycle_check = kind != 2
        y, _ = await bench.run_pass("draft", x[:1], w, enc, cycle_check=cycle_check)
        _same(y, arith.draft_gemm(x[:1], enc, config.draft_frac_bits, config.draft_lanes),
              bench.fail(f"draft N={n} K={k}"))
        y, _ = await bench.run_pass("verify", x, w, enc, fp16=number % 3 == 1,
                                    cycle_check=cycle_check)
        _same(y, arith.verify_gemm(x, speq16.decode(enc)), bench.fail(f"verify N={n} K={k} T={t}"))
        alone, _ = await bench.run_pass("baseline", x[:1], w, None, fp16=number % 3 == 0,
                                        cycle_check=cycle_check)
        _same(y[:1], alone, bench.fail(f"verify token 0 vs its baseline pass, N={n} K={k}"))
        # The same weights as the KV cache's byte planes (attention's passes).
        y, _ = await bench.run_pass("kv", x, w, None, cycle_check=cycle_check)
        _same(y, arith.verify_gemm(x, w), bench.fail(f"kv N={n} K={k} T={t}"))
        y, _ = await bench.run_pass("kv_draft", x, w, None, cycle_check=cycle_check)
        _same(y, arith.verify_gemm(x, speq16.kv_draft(w)), bench.fail(f"kv_draft N={n} K={k} T={t}"))
        dut._log.info("N=%d K=%d T=%d: draft, verify, baseline, kv, kv_draft bit-exact", n, k, t)

    # Multi-head passes (head_groups G > 1): pauses on the bus and the result
    # stream, not on the activations (the cycle check needs them on time).
    bench.pauses(0.2, 0.0, 0.2)
    await multihead_passes(bench, config.head_groups, [(5, 12, 2)])

    # A weight read the RAM fails: the pass ends, with READ_ERROR.
    bench.pauses(0.0, 0.0, 0.0)
    bench.source.send_nowait(AxiStreamFrame(activation_beats(np.zeros((1, 4), np.float16))))
    await driver.start("baseline", 1, 4, 1, wbase0=RAM_BYTES)
    await with_timeout(bench.sink.recv(), 100_000, "ns")
    status = await driver.wait(polls=200)
    assert status["error"] == Error.READ_ERROR.value, bench.fail(f"failed read: {status}")
    summary["refused"] += 1
    try:
        await driver.run_pass("draft", 0, 4, wbase0=0)
        raise AssertionError(bench.fail("N = 0 not refused"))
    except DriverError:
        summary["refused"] += 1

    # Activations sent for a pass that is then refused wait in the AXI top;
    # CONTROL.FLUSH drops them, and the next pass reads its own.
    stale = rng.standard_normal((2, 8)).astype(np.float16)
    bench.source.send_nowait(AxiStreamFrame(activation_beats(stale)))
    await bench.source.wait()
    await bench.refused("baseline", Error.BAD_N, n=0, k=8)
    await driver.flush()
    w = (rng.standard_normal((3, 8)) * 0.05).astype(np.float16)
    x = rng.standard_normal((1, 8)).astype(np.float16)
    y, _ = await bench.run_pass("baseline", x, w, None)
    _same(y, arith.verify_gemm(x, w), bench.fail("the baseline pass after a flush"))

    if len(shapes) >= 2:
        assert summary["wait_mem"] and summary["wait_out"], bench.fail(
            f"no wait for weights or for the result stream: {summary}")

    # The master keeps several bursts in flight, never more than it may.
    summary["most_bursts_in_flight"] = bench.ram.most_in_flight
    assert 2 <= bench.ram.most_in_flight <= axi.max_outstanding, bench.fail(
        f"{bench.ram.most_in_flight} bursts in flight, max_outstanding {axi.max_outstanding}")

    dut._log.info("axi: %s", summary)
    Path("summary.json").write_text(json.dumps(summary))


@cocotb.test()
async def axi_kv_write(dut):
    """KV_WRITE through the write channels into cocotbext-axi's write RAM
    (``KV_WRITES`` commands, keys and values in turn; AW, W and B pause at
    random in every other one): the memory, the counters and a kv pass over
    the written images (`Bench.run_kv_write`, `Bench.kv_pass`); a refused
    KV_WRITE; a write the RAM fails answers READ_ERROR."""
    config = SpeqConfig(**json.loads(os.environ["ACCEL_CONFIG"]))
    axi = AxiConfig(**json.loads(os.environ["AXI_CONFIG"]))
    seed = runner.seed()
    bench = await _clock_and_reset(dut, lambda: Bench(dut, config, axi, seed))
    driver, summary = bench.driver, bench.summary
    for number in range(int(os.environ.get("KV_WRITES", "4"))):
        vt = number % 2
        # Pauses on the write channels (and the reads and registers), not
        # on the activations: the cycle check needs them on time.
        bench.pauses(0.3 if number % 4 >= 2 else 0.0, 0.0, 0.0)
        cache, pos, new = bench.kv_problem(vt)
        wbase, counters = await bench.run_kv_write(vt, cache, pos, new)
        what = f"KV_WRITE {number} ({'values' if vt else 'keys'})"
        await bench.kv_pass(vt, cache, pos + len(new), wbase, what)
        dut._log.info("%s %s positions %d..%d: memory and kv pass bit-exact, %s", what,
                      cache.shape, pos, pos + len(new) - 1, counters)
    bench.pauses(0.0, 0.0, 0.0)
    # Positions past a keys image: refused, no activation read.
    await bench.refused("kv_write", Error.BAD_N, n=10, k=8, t=3, pos=8)
    # A write the RAM fails: the command ends, with READ_ERROR.
    new = np.zeros((1, 4), np.float16)
    bench.source.send_nowait(AxiStreamFrame(activation_beats(new)))
    await driver.start("kv_write", 4, 4, 1, wbase0=RAM_BYTES, wbase1=0, pos=0, vt=0)
    status = await driver.wait(polls=200)
    assert status["error"] == Error.READ_ERROR.value, bench.fail(f"failed write: {status}")
    summary["refused"] += 1
    dut._log.info("axi kv write: %s", summary)
    Path("summary_kv_write.json").write_text(json.dumps(summary))


async def _clock_and_reset(dut, make_bench):
    """Idle inputs, the clock, ``make_bench()`` during the reset, then out of reset."""
    dut.aresetn.value = 0
    writes = ("m_axi_awready", "m_axi_wready", "m_axi_bvalid") if hasattr(dut, "m_axi_awvalid") \
        else ()
    for name in ("s_axil_awvalid", "s_axil_wvalid", "s_axil_bready", "s_axil_arvalid",
                 "s_axil_rready", "m_axi_arready", "m_axi_rvalid", "s_axis_tvalid",
                 "m_axis_tready", *writes):
        getattr(dut, name).value = 0
    # The models look at the reset as they start: let it settle first.
    await Timer(1, "ns")
    cocotb.start_soon(Clock(dut.aclk, CLOCK_NS, unit="ns", impl="gpi").start())
    bench = make_bench()
    for _ in range(4):
        await FallingEdge(dut.aclk)
    dut.aresetn.value = 1
    await RisingEdge(dut.aclk)
    return bench


#: Shapes (N, K, T) of the cycle model's exact check (1x2 array: tiles of 4
#: rows): one tile, three tiles with a last one of one row, two tiles of
#: T = 3; each in draft (T = 1), verify, baseline, kv and kv_draft over T tokens.
EXACT_SHAPES = [(4, 32, 1), (9, 64, 4), (7, 40, 3)]
#: Its read latencies: the memory faster than, about, and far slower than
#: the 1x2 configuration's FIFOs (8 words) cover.
EXACT_LATENCIES = [1, 8, 32]


@cocotb.test()
async def axi_exact(dut):
    """Fixed read latency, no pauses: STATUS.CYCLES, WAIT_MEM and the bursts
    of every pass equal `golden.axi_perf.axi_pass_cost`'s."""
    config = SpeqConfig(**json.loads(os.environ["ACCEL_CONFIG"]))
    axi = AxiConfig(**json.loads(os.environ["AXI_CONFIG"]))
    seed = runner.seed()
    bench = await _clock_and_reset(dut, lambda: Bench(dut, config, axi, seed, fixed_latency=1))
    rng, driver = bench.rng, bench.driver
    for latency in json.loads(os.environ["EXACT_LATENCIES"]):
        bench.ram.latency = latency
        for n, k, t in json.loads(os.environ["EXACT_SHAPES"]):
            w = (rng.standard_normal((n, k)) * 0.05).astype(np.float16)
            x = rng.standard_normal((t, k)).astype(np.float16)
            enc = speq16.encode(w)
            await driver.load_table(enc)
            y, _ = await bench.run_pass("draft", x[:1], w, enc)
            _same(y, arith.draft_gemm(x[:1], enc, config.draft_frac_bits, config.draft_lanes),
                  bench.fail(f"draft N={n} K={k}"))
            y, _ = await bench.run_pass("verify", x, w, enc)
            _same(y, arith.verify_gemm(x, speq16.decode(enc)),
                  bench.fail(f"verify N={n} K={k} T={t}"))
            y, _ = await bench.run_pass("baseline", x, w, None)
            _same(y, arith.verify_gemm(x, w), bench.fail(f"baseline N={n} K={k} T={t}"))
            y, _ = await bench.run_pass("kv", x, w, None)
            _same(y, arith.verify_gemm(x, w), bench.fail(f"kv N={n} K={k} T={t}"))
            y, _ = await bench.run_pass("kv_draft", x, w, None)
            _same(y, arith.verify_gemm(x, speq16.kv_draft(w)),
                  bench.fail(f"kv_draft N={n} K={k} T={t}"))
        # Multi-head passes, exact as well (head_groups > 1).
        await multihead_passes(bench, config.head_groups, [(5, 16, 2)])
        # KV_WRITE at the same latency for its writes: keys, then values.
        for vt in (0, 1):
            cache, pos, new = bench.kv_problem(vt)
            wbase, counters = await bench.run_kv_write(vt, cache, pos, new)
            await bench.kv_pass(vt, cache, pos + len(new), wbase,
                                f"KV_WRITE {'values' if vt else 'keys'}")
            dut._log.info("KV_WRITE %s %s positions %d..%d at write latency %d: CYCLES %d, "
                          "WAIT_MEM %d, as axi_perf's %s", "values" if vt else "keys",
                          cache.shape, pos, pos + len(new) - 1, latency, counters["cycles"],
                          counters["wait_mem"], counters["model"])
    dut._log.info("axi exact: %s", bench.summary)
    Path("summary_exact.json").write_text(json.dumps(bench.summary))


async def _cycles(dut, count):
    for _ in range(count):
        await RisingEdge(dut.aclk)


@cocotb.test()
async def axi_abort_reset(dut):
    """CONTROL.ABORT at random points of passes (while the tables are being
    copied, before the activations come, while weights and results are in
    flight), and aresetn pulled low in the middle of a pass while the memory
    goes on answering the bursts asked for before it: after each, a good
    pass bit-exact (`ABORTS`, `RESETS` of each). The result stream is paused
    until an abort, so that no result frame is cut (a cut frame has no TLAST;
    an integrator resets the S2MM DMA, docs/axi.md)."""
    config = SpeqConfig(**json.loads(os.environ["ACCEL_CONFIG"]))
    axi = AxiConfig(**json.loads(os.environ["AXI_CONFIG"]))
    seed = runner.seed()
    # The fixed-latency slave answers every burst it took, reset or not.
    bench = await _clock_and_reset(dut, lambda: Bench(dut, config, axi, seed, fixed_latency=24))
    rng, driver = bench.rng, bench.driver
    counts = {"aborted": 0, "finished_first": 0, "resets": 0, "good": 0, "irq": 0}
    machine = bench.machine

    def problem():
        n, k, t = int(rng.integers(9, 33)), 4 * int(rng.integers(4, 9)), \
            int(rng.integers(1, config.tmax + 1))
        w = (rng.standard_normal((n, k)) * 0.05).astype(np.float16)
        return w, rng.standard_normal((t, k)).astype(np.float16), speq16.encode(w)

    async def good_pass(what):
        w, x, enc = problem()
        await driver.load_table(enc)
        bench.pauses(0.0, 0.0, 0.0)
        y, _ = await bench.run_pass("verify", x, w, enc, cycle_check=False)
        _same(y, arith.verify_gemm(x, speq16.decode(enc)), bench.fail(f"verify after {what}"))
        y, _ = await bench.run_pass("kv_draft", x, w, None, cycle_check=False)
        _same(y, arith.verify_gemm(x, speq16.kv_draft(w)), bench.fail(f"kv_draft after {what}"))
        counts["good"] += 1

    # Interrupts: IRQ_ENABLE is kept when START is written (register map 2.0).
    await driver.irq_enable(True)
    await good_pass("irq_enable")
    assert dut.irq.value == 1, bench.fail("irq low while DONE with IRQ_ENABLE.DONE")
    await driver.clear_done()
    await RisingEdge(dut.aclk)
    assert dut.irq.value == 0, bench.fail("irq high after DONE was cleared")
    counts["irq"] += 1
    await driver.irq_enable(False)

    aborts = int(os.environ.get("ABORTS", "6"))
    for number in range(aborts):
        w, x, enc = problem()
        n, t, k = w.shape[0], x.shape[0], x.shape[1]
        await driver.load_table(enc)                  # dirty tables: START copies them
        wbase = bench.place(perf.pass_images("verify", w, enc, machine["pes"],
                                             machine["slots"], config.mem_bits))
        bench.pauses(0.0, 0.0, 1.0)                   # results held back
        early = number % 3 == 0                      # before the activations come
        if not early:
            bench.source.send_nowait(AxiStreamFrame(activation_beats(x)))
        await driver.start("verify", n, k, t, wbase0=wbase[0], wbase1=wbase[1])
        if not early:
            await bench.source.wait()
        cost = perf.pass_cost("verify", n, k, t, mem_latency=24, **machine).cycles
        await _cycles(dut, int(rng.integers(0, cost)))
        status = await driver.abort()
        if status["error"] == Error.ABORTED.value:
            counts["aborted"] += 1
            counters = await driver.counters()
            assert not any(counters.values()), bench.fail(f"counters after ABORT: {counters}")
        else:
            # The pass had finished before the abort arrived: its results
            # are all in the result FIFO (or none were held back).
            assert status["error"] == Error.OK.value, bench.fail(f"abort: {status}")
            counts["finished_first"] += 1
        assert not status["busy"] and status["done"], bench.fail(f"abort: {status}")
        bench.pauses(0.0, 0.0, 0.0)
        if status["error"] == Error.OK.value:
            await with_timeout(bench.sink.recv(), 1_000_000, "ns")
        await _cycles(dut, 4)
        assert bench.sink.empty(), bench.fail("a result frame after an abort")
        await good_pass(f"abort {number}")

    resets = int(os.environ.get("RESETS", "3"))
    for number in range(resets):
        w, x, enc = problem()
        n, t, k = w.shape[0], x.shape[0], x.shape[1]
        await driver.load_table(enc)
        wbase = bench.place(perf.pass_images("verify", w, enc, machine["pes"],
                                             machine["slots"], config.mem_bits))
        bench.source.send_nowait(AxiStreamFrame(activation_beats(x)))
        await driver.start("verify", n, k, t, wbase0=wbase[0], wbase1=wbase[1])
        await bench.source.wait()
        # Bursts in flight: the read latency is 24 cycles.
        await _cycles(dut, int(rng.integers(1, 20)))
        in_flight = int(dut.m_axi_arvalid.value) + len(bench.ram.pending())
        await FallingEdge(dut.aclk)
        dut.aresetn.value = 0
        await _cycles(dut, int(rng.integers(1, 4)))
        await FallingEdge(dut.aclk)
        dut.aresetn.value = 1
        await RisingEdge(dut.aclk)
        counts["resets"] += 1
        counts.setdefault("bursts_in_flight_at_reset", []).append(in_flight)
        status = await driver.status()
        assert not status["busy"] and not status["done"], bench.fail(f"after reset: {status}")
        # The memory is still answering the bursts of before the reset.
        await good_pass(f"reset {number}")

    if bench.config.mem_bits % 32 == 0:
        await _kv_write_abort_reset(dut, bench, counts)

    assert counts["aborted"] >= aborts // 2, bench.fail(f"too few aborts landed: {counts}")
    assert max(counts["bursts_in_flight_at_reset"]) > 0, bench.fail(
        f"no burst was in flight at a reset: {counts}")
    dut._log.info("axi abort and reset: %s", counts)
    Path("summary_abort.json").write_text(json.dumps({"seed": seed, **counts}))


async def _kv_write_abort_reset(dut, bench, counts):
    """KV_WRITEs aborted with writes in flight (``KV_ABORTS``), then one
    with aresetn pulled low while its responses are still to come (the
    slave's latency raised to 100 cycles, so that they come while the next
    KV_WRITE's writes are in flight): after each, a KV_WRITE whose cycles
    equal the model's and a kv pass over what it wrote, bit-exact."""
    rng, driver, config = bench.rng, bench.driver, bench.config
    counts.update(kv_aborted=0, kv_finished_first=0, kv_resets=0, kv_good=0,
                  responses_due_at_reset=0)

    def problem(vt):
        # At most four beats: all of them wait in the activation FIFO, so
        # that none is left in the source at the abort (docs/axi.md).
        cache, pos, new = bench.kv_problem(vt, d=4 if vt else min(16, 4 * (config.kmax // 4)))
        return cache, pos, new[:4 if vt else 1]

    async def good_write(what):
        vt = int(rng.integers(0, 2))
        cache, pos, new = bench.kv_problem(vt)
        wbase, _ = await bench.run_kv_write(vt, cache, pos, new)
        await bench.kv_pass(vt, cache, pos + len(new), wbase, f"KV_WRITE after {what}")
        counts["kv_good"] += 1

    kv_aborts = int(os.environ.get("KV_ABORTS", "2"))
    for number in range(kv_aborts + 1):
        reset = number == kv_aborts
        if reset:
            bench.ram.latency = 100
        vt = number % 2 if not reset else 1
        cache, pos, new = problem(vt)
        n, k = cache.shape
        wbase = bench.place(perf.kv_images(cache, bench.pes, bench.machine["slots"],
                                           config.mem_bits))
        bench.source.send_nowait(AxiStreamFrame(activation_beats(new)))
        await driver.start("kv_write", n, k, len(new), wbase0=wbase[0], wbase1=wbase[1],
                           pos=pos, vt=vt)
        await bench.source.wait()
        cost = axi_perf.axi_kv_write_cost(vt, new.shape[1], len(new),
                                          write_latency=bench.ram.latency,
                                          max_outstanding=bench.axi.max_outstanding).cycles
        if not reset:
            await _cycles(dut, int(rng.integers(0, cost)))
            status = await driver.abort()
            if status["error"] == Error.ABORTED.value:
                counts["kv_aborted"] += 1
                counters = await driver.counters()
                assert not any(counters.values()), bench.fail(
                    f"counters after aborting a KV_WRITE: {counters}")
                assert bench.ram.writes_in_flight() == 0, bench.fail(
                    "ABORT ended before every write was answered")
            else:
                assert status["error"] == Error.OK.value, bench.fail(f"KV abort: {status}")
                counts["kv_finished_first"] += 1
            assert not status["busy"] and status["done"], bench.fail(f"KV abort: {status}")
        else:
            # Writes in flight: some answered before the reset, some after.
            await _cycles(dut, int(rng.integers(20, 60)))
            counts["responses_due_at_reset"] = bench.ram.writes_in_flight()
            await FallingEdge(dut.aclk)
            dut.aresetn.value = 0
            await _cycles(dut, int(rng.integers(1, 4)))
            await FallingEdge(dut.aclk)
            dut.aresetn.value = 1
            await RisingEdge(dut.aclk)
            counts["kv_resets"] += 1
            status = await driver.status()
            assert not status["busy"] and not status["done"], bench.fail(
                f"after a reset in a KV_WRITE: {status}")
        await good_write(f"KV abort {number}" if not reset else "a reset in a KV_WRITE")
    bench.ram.latency = 24
    assert counts["responses_due_at_reset"] > 0, bench.fail(
        f"no write response was due at the reset: {counts}")


@cocotb.test()
async def axi_latency(dut):
    """The latency table (``bench/axi_latency.py``): the passes of
    ``LATENCY_RUNS`` ([read latency, mode, N, K, T] each), fixed latency and
    no pauses, each checked against `golden.axi_perf`; their counters to
    ``summary_latency.json``."""
    config = SpeqConfig(**json.loads(os.environ["ACCEL_CONFIG"]))
    axi = AxiConfig(**json.loads(os.environ["AXI_CONFIG"]))
    runs = json.loads(os.environ["LATENCY_RUNS"])
    seed = runner.seed()
    bench = await _clock_and_reset(dut, lambda: Bench(dut, config, axi, seed,
                                                      ram_bytes=1 << 23, fixed_latency=1))
    rng, rows = bench.rng, []
    n_max, k_max = max(r[2] for r in runs), max(r[3] for r in runs)
    w_all = (rng.standard_normal((n_max, k_max)) * 0.05).astype(np.float16)
    x_all = rng.standard_normal((config.tmax, k_max)).astype(np.float16)
    encs = {}
    for number, (latency, mode, n, k, t) in enumerate(runs):
        began = time.monotonic()
        bench.ram.latency = latency
        w, x = w_all[:n, :k], x_all[:t, :k]
        if mode != "baseline" and (n, k) not in encs:
            encs[(n, k)] = speq16.encode(w)
        enc = encs.get((n, k))
        if enc is not None:
            await bench.driver.load_table(enc)
        _, counters = await bench.run_pass(mode, x, w, enc if mode != "baseline" else None)
        rows.append({"latency": latency, "mode": mode, "n": n, "k": k, "t": t,
                     "cycles": counters["cycles"], "wait_mem": counters["wait_mem"],
                     "model": counters["model"].cycles, "wbase": counters["wbase"]})
        Path("summary_latency.json").write_text(json.dumps(rows))
        dut._log.warning("run %d of %d: read latency %d, %s %dx%dx%d: %d cycles (model %d), "
                         "%.0f s", number + 1, len(runs), latency, mode, n, k, t,
                         counters["cycles"], counters["model"].cycles, time.monotonic() - began)


# (name, config, AXI config, random shapes, the first shape's kind (0: no
# pauses, 1: pauses but the activations', 2: every channel), simulators).
# Small: the bench's Python (cocotbext-axi's channels, pause generators) runs
# every cycle, and Verilator's model takes about 30 s to build; so each
# simulator runs its own configuration, as the accelerator bench does.
CONFIGS = [
    # Two head groups (multi-head passes, exact against axi_perf).
    ("1x2", {"rows": 1, "cols": 2, "tmax": 4, "pe_stages": 1, "kmax": 64, "mem_bits": 32,
             "draft_lanes": 1, "head_groups": 2},
     {"burst_beats": 4, "max_outstanding": 3, "fifo_depth": 8, "act_depth": 4, "out_depth": 4},
     3, 0, ("verilator",)),
    # Two draft words per entry (a verify entry's 8 beats split 2 + 6
    # between the planes), two draft lanes, bursts of 8.
    ("2x2_l2", {"rows": 2, "cols": 2, "tmax": 3, "pe_stages": 2, "kmax": 64, "mem_bits": 32,
                "draft_lanes": 2},
     {"burst_beats": 8, "max_outstanding": 2, "fifo_depth": 16, "act_depth": 4, "out_depth": 4},
     2, 1, ("icarus",)),
]


@pytest.mark.parametrize("name,config,axi,shapes,first_kind,sim", [
    pytest.param(name, config, axi, shapes, first_kind, sim, id=f"{name}-{sim}")
    for name, config, axi, shapes, first_kind, sims in CONFIGS for sim in sims])
def test_axi(name, config, axi, shapes, first_kind, sim):
    build_dir = runner.BUILD_ROOT / f"axi_{name}" / sim
    (build_dir / "summary.json").unlink(missing_ok=True)
    # SHAPES (make soak) scales the Verilator run; Icarus, at a few seconds a
    # shape, keeps its count unless SHAPES lists the shapes to rerun.
    given = os.environ.get("SHAPES", str(shapes))
    shapes = given if sim == "verilator" or given.startswith("[") else str(shapes)
    for summary in ("summary_exact.json", "summary_abort.json", "summary_kv_write.json"):
        (build_dir / summary).unlink(missing_ok=True)
    # The cycle model's exact check runs on Verilator only (the faster one),
    # in the same simulation: no second model to build.
    exact = sim == "verilator"
    # The build's manifest, whose memory_images the bench builds its images from.
    from rtl_gen import build
    build_dir.mkdir(parents=True, exist_ok=True)
    build.write("axi", SpeqConfig(**config), build_dir / "ip", AxiConfig(**axi))
    runner.run(_top(config, axi), bench=f"axi_{name}", toplevel=TOPLEVEL,
               test_module="tb.test_axi", sim=sim,
               testcase=["axi_passes", "axi_kv_write", "axi_exact", "axi_abort_reset"] if exact
               else ["axi_passes", "axi_abort_reset"],
               extra_env={"ACCEL_CONFIG": json.dumps(config), "AXI_CONFIG": json.dumps(axi),
                          "SHAPES": shapes, "FIRST_KIND": str(first_kind),
                          "MANIFEST": str(build_dir / "ip" / "manifest.json"),
                          # Aborts and resets: fewer on Icarus (make soak: ABORTS, RESETS).
                          "ABORTS": os.environ.get("ABORTS", "6" if exact else "3"),
                          "RESETS": os.environ.get("RESETS", "3" if exact else "2"),
                          # KV_WRITE: commands of axi_kv_write, aborts (make soak: more).
                          "KV_WRITES": os.environ.get("KV_WRITES", "4"),
                          "KV_ABORTS": os.environ.get("KV_ABORTS", "2" if exact else "1"),
                          "EXACT_SHAPES": json.dumps(EXACT_SHAPES),
                          "EXACT_LATENCIES": json.dumps(EXACT_LATENCIES)})
    summary = json.loads((build_dir / "summary.json").read_text())
    count = len(json.loads(shapes)) if shapes.startswith("[") else int(shapes)
    multihead = 2 * (config.get("head_groups", 1) > 1)
    assert summary["passes"] == 5 * count + 1 + multihead and summary["refused"] == 8, summary
    assert summary["multihead"] == multihead, summary
    assert summary["images_from_manifest"] == summary["passes"], summary
    print(f"axi {name} [{sim}]: {summary}")
    summary = json.loads((build_dir / "summary_abort.json").read_text())
    aborts = int(os.environ.get("ABORTS", "6" if exact else "3"))
    resets = int(os.environ.get("RESETS", "3" if exact else "2"))
    assert summary["aborted"] >= aborts // 2 and summary["resets"] == resets, summary
    assert summary["irq"] == 1, summary
    kv_aborts = int(os.environ.get("KV_ABORTS", "2" if exact else "1"))
    assert summary["kv_aborted"] >= kv_aborts // 2 and summary["kv_resets"] == 1, summary
    assert summary["kv_good"] == kv_aborts + 1, summary
    print(f"axi {name} [{sim}] abort and reset: {summary}")
    if exact:
        summary = json.loads((build_dir / "summary_exact.json").read_text())
        want = 5 * len(EXACT_SHAPES) * len(EXACT_LATENCIES)
        # And two multi-head passes and a kv pass after each of its two
        # KV_WRITEs per latency.
        assert summary["exact_checks"] == summary["passes"] == want + 4 * len(EXACT_LATENCIES), \
            summary
        assert summary["multihead"] == 2 * len(EXACT_LATENCIES), summary
        assert summary["kv_write_exact_checks"] == 2 * len(EXACT_LATENCIES), summary
        print(f"axi {name} [{sim}] exact: {summary}")
        summary = json.loads((build_dir / "summary_kv_write.json").read_text())
        writes = int(os.environ.get("KV_WRITES", "4"))
        assert summary["kv_writes"] == writes == summary["cycle_checks"] // 2, summary
        assert summary["refused"] == 2, summary
        print(f"axi {name} [{sim}] kv write: {summary}")


