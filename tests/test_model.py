"""bench/model_sim.py, the simulator behind bench/model.py, on graphs whose makespan and
critical path can be worked out by hand: a chain, chains across workers with latencies, two
independent chains with room for one or two workers, Lambda's burst scaling over one and two
functions, a shared relay, and ExCamera batches of three and five chunks."""

from __future__ import annotations

import importlib.util
import sys

import pytest

from _shared_paths import REPO


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, REPO / "bench" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod  # dataclasses look their module up while building the classes
    spec.loader.exec_module(mod)
    return mod


ms = _load("model_sim")


def sim(concurrency: int = 100, **kw) -> ms.Simulation:
    return ms.Simulation(ms.LaunchModel(concurrency=concurrency, **kw))


def test_one_chain_on_one_worker_adds_its_costs_and_the_cold_start() -> None:
    s = sim(cold_start=1.0)
    w = s.worker("w")
    a = s.task("a", "x", w, 2.0)
    b = s.task("b", "y", w, 3.0)
    assert s.run() == 6.0
    assert (a.start, a.end, b.start, b.end) == (1.0, 3.0, 3.0, 6.0)
    assert s.critical_path() == {"x": 2.0, "y": 3.0, "cold start": 1.0}


def test_a_chain_across_workers_waits_for_its_dependency_and_the_latency() -> None:
    s = sim()
    w1, w2 = s.worker("w1"), s.worker("w2")
    a = s.task("a", "x", w1, 2.0)
    s.task("early", "z", w2, 1.0)  # w2 works while it waits
    b = s.task("b", "y", w2, 3.0, [(a, 0.5)])
    assert s.run() == 5.5
    assert b.start == 2.5
    assert s.critical_path() == {"x": 2.0, "latency": 0.5, "y": 3.0}


def test_two_independent_chains_run_side_by_side_or_one_after_the_other() -> None:
    for concurrency, expect in ((2, 4.0), (1, 7.0 + 0.25)):
        s = sim(concurrency, warm_start=0.25)
        w1, w2 = s.worker("w1"), s.worker("w2")
        s.task("a1", "x", w1, 1.0)
        s.task("a2", "x", w1, 2.0)
        s.task("b1", "x", w2, 4.0)
        assert s.run() == expect
        # With one slot the second worker reuses the first's environment, warm.
        assert w2.warm == (concurrency == 1)
        assert sum(s.critical_path().values()) == pytest.approx(expect)


def test_burst_scaling_limits_launches_per_function() -> None:
    """10 environments at once, then one per second, per function (the tasks outlast the
    launches, so no environment is free to be reused)."""
    for functions, last_invoke in ((1, 15.0), (2, 3.0)):
        s = sim(100, functions=functions, burst=10, refill_per_s=1.0, cold_start=0.5)
        ws = [s.worker(f"w{i}") for i in range(25)]
        for w in ws:
            s.task(f"{w.name}:t", "x", w, 100.0)
        assert s.run() == pytest.approx(last_invoke + 0.5 + 100.0)
        assert max(w.invoked_at for w in ws) == pytest.approx(last_invoke)
        assert sum(w.invoked_at == 0.0 for w in ws) == 10 * functions
        path = s.critical_path()
        assert path["launch: burst scaling"] == pytest.approx(last_invoke)
        assert path["cold start"] == 0.5


def test_lambdas_documented_rate_over_2500_workers() -> None:
    """1,000 new environments at once, then 100 per second: the 2,500th goes out at 15 s.
    (Tokens refilled in fractions must not leave the launcher retrying at one instant.)"""
    s = sim(10_000, burst=1000, refill_per_s=100.0)
    ws = [s.worker(f"w{i}") for i in range(2500)]
    for w in ws:
        s.task(f"{w.name}:t", "x", w, 100.0)
    assert s.run() == pytest.approx(115.0)
    assert ws[999].invoked_at == 0.0 and ws[1000].invoked_at > 0.0
    assert ws[-1].invoked_at == pytest.approx(15.0)


def test_the_coordinators_invoke_rate_spaces_invocations() -> None:
    s = sim(100, invoke_rate=4.0)
    ws = [s.worker(f"w{i}") for i in range(9)]
    for w in ws:
        s.task(f"{w.name}:t", "x", w, 1.0)
    assert s.run() == pytest.approx(2.0 + 1.0)
    assert [w.invoked_at for w in ws] == pytest.approx([i / 4 for i in range(9)])


def test_a_shared_relay_serves_messages_first_come_first_served() -> None:
    for capacity, expect in ((1, 1.0 + 2 * 3.0), (2, 1.0 + 3.0)):
        s = sim()
        relay = s.server("relay", capacity)
        w1, w2 = s.worker("w1"), s.worker("w2")
        m1 = s.task("m1", "relay", relay, 3.0, [(s.task("a", "x", w1, 1.0), 0.0)])
        m2 = s.task("m2", "relay", relay, 3.0, [(s.task("b", "x", w2, 1.0), 0.0)])
        assert s.run() == expect
        assert sorted([m1.end, m2.end]) == ([4.0, 7.0] if capacity == 1 else [4.0, 4.0])
        path = s.critical_path()
        # With one relay the later message waited for the other one's whole forwarding.
        assert path == ({"x": 1.0, "relay": 3.0, "queue:relay": 3.0} if capacity == 1
                        else {"x": 1.0, "relay": 3.0})
        assert sum(path.values()) == expect


def test_a_cycle_is_reported_not_hung() -> None:
    s = sim()
    w = s.worker("w")
    a = s.task("a", "x", w, 1.0)
    b = s.task("b", "x", w, 1.0, [(a, 0.0)])
    a.deps.append((b, 0.0))
    b._dependents.append((a, 0.0))
    a._waiting = 1
    with pytest.raises(ms.SimulationError, match="never ran"):
        s.run()


def test_an_excamera_batch_of_three_chunks() -> None:
    """Hand-worked: T = retrieve + pass0 + xcdump. Chunk 0 hands its state on (T+k+y). Chunk 1
    hands on its pass-0 state, unpacks chunk 0's, runs its final pass 1 and hands that on (at
    T+2k+2y+u+g). Chunk 2, the last, unpacks chunk 1's pass-0 state and runs pass 1 (done at
    T+k+y+u+e, earlier), unpacks chunk 1's final state (its pass-1 state too: one message),
    runs the re-decide pass and pass 3, then uploads."""
    r, a, d, e, f, g, h = 1.0, 10.0, 2.0, 2.0, 3.0, 4.0, 6.0
    k, u, y, z = 0.5, 0.25, 0.125, 0.0625
    s = sim(3)
    c = ms.ChunkCosts(retrieve=r, pass0=a, xcdump=d, pass1_final=g, pass1=e, redecide=h,
                      pass3=f, pack=k, unpack=u, relay=y, upload=z)
    ws = ms.excamera_graph(s, chunks=3, batch=3, c=c, relays=2)
    t = r + a + d
    assert t + k + y + u + e < t + 2 * k + 2 * y + u + g
    assert s.run() == t + 2 * k + 2 * y + 2 * u + g + h + f + z
    kinds = [[x.kind for x in w.tasks] for w in ws]
    assert kinds[0] == ["retrieve", "pass0", "xcdump", "pack", "upload"]
    assert kinds[1] == ["retrieve", "pass0", "xcdump", "pack", "unpack", "pass1_final", "pack",
                        "upload"]
    assert kinds[2] == ["retrieve", "pass0", "xcdump", "unpack", "pass1", "unpack", "redecide",
                        "pass3", "upload"]
    assert s.critical_path() == {"retrieve": r, "pass0": a, "xcdump": d, "pack": 2 * k,
                                 "relay": 2 * y, "unpack": 2 * u, "pass1_final": g,
                                 "redecide": h, "pass3": f, "upload": z}


def test_a_fourth_chunk_takes_each_of_its_predecessors_three_states() -> None:
    """From the fourth chunk of a batch on, the predecessor's pass-1 and final states are two
    messages: chunk 3 unpacks three (pass 0's, pass 1's, the final), and chunk 2 packs three."""
    c = ms.ChunkCosts(retrieve=0, pass0=1, xcdump=0, pass1_final=1, pass1=1, redecide=1,
                      pass3=1, pack=0, unpack=0, relay=0, upload=0)
    s = sim(5)
    ws = ms.excamera_graph(s, chunks=5, batch=5, c=c)
    kinds = [[x.kind for x in w.tasks] for w in ws]
    assert kinds[2].count("pack") == 3 and kinds[3].count("unpack") == 3
    assert kinds[4].count("pack") == 0  # the last of its batch hands nothing on
    # chunk 2's hop ends at 4 (pass 0, chunk 1's final pass 1, its re-decide pass, pass 3),
    # and chunks 3 and 4 each add one pass 3
    assert s.run() == 6.0
    assert sum(t.kind == "relay" for t in s.tasks) == 1 + 2 + 3 + 3


def test_batches_are_independent_chains() -> None:
    """Two batches of 16 on 32 workers finish together. On 16, the second batch starts in the
    environments the first leaves (warm): chunk 0 ends at 1 and chunks 1 and 16 at 2, so the
    second batch's chunks 1 and 2 start at 2, and its chunk 2's pass 3 ends at 6. Its chunk 3
    gets the environment chunk 2 leaves at 4: its pass 0, pass 1 and re-decide pass end at 7
    and its pass 3 at 8, and each of the 12 later hops adds 1: 20."""
    c = ms.ChunkCosts(retrieve=0, pass0=1, xcdump=0, pass1_final=1, pass1=1, redecide=1,
                      pass3=1, pack=0, unpack=0, relay=0, upload=0)
    one = sim(16)
    ms.excamera_graph(one, 16, 16, c)
    single = one.run()
    # pass 0, chunk 1's final pass 1, chunk 2's re-decide pass and pass 3, 13 hops
    assert single == 1 + 1 + 2 + 13 * 1
    both = sim(32)
    ms.excamera_graph(both, 32, 16, c)
    assert both.run() == single
    squeezed = sim(16)
    ms.excamera_graph(squeezed, 32, 16, c)
    assert squeezed.run() == 20.0
    ws = squeezed.workers
    ends = {w.end for w in ws}
    assert [w.invoked_at for w in ws[16:20]] == [1.0, 2.0, 2.0, 4.0]
    assert all(w.invoked_at in ends for w in ws[16:])
    assert all(w.warm for w in ws[16:]) and not any(w.warm for w in ws[:16])
