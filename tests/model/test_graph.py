"""nb2pipe.model.graph: the step DAG, its stable order, and cycles reported in data-flow direction."""

from __future__ import annotations

import itertools

import pytest

from nb2pipe.model.graph import GraphCycle, StepGraph, suggest


def graph(steps, *edges) -> StepGraph:
    g = StepGraph(list(steps))
    for edge in edges:
        g.add_edge(*edge)
    return g


def test_add_edge_records_upstreams_and_variables():
    g = graph("abc", ("a", "b", "x"), ("a", "b", "y"), ("a", "b", "x"), ("b", "c"))
    assert g.upstreams == {"b": ["a"], "c": ["b"]}
    assert g.edges == {("a", "b"): ["x", "y"], ("b", "c"): []}


def test_order_is_notebook_order_when_edges_allow_it():
    # fetch -> summarise -> report; `shell` is independent and sits between them in the notebook.
    g = graph(["fetch", "summarise", "shell", "report"],
              ("fetch", "summarise", "sizes"), ("summarise", "report", "doubled"), ("fetch", "report", "sizes"))
    assert g.order() == ["fetch", "summarise", "shell", "report"]


def test_order_follows_backward_after_edges():
    g = graph("abc", ("c", "a"))  # a after:c
    assert g.order() == ["b", "c", "a"]


def test_fan_out_fan_in_order():
    shards = [f"shard_{i}" for i in range(8)]
    g = graph(["prepare", *shards, "combine"],
              *[("prepare", s, "shards") for s in shards], *[(s, "combine", f"r{i}") for i, s in enumerate(shards)])
    assert g.order() == ["prepare", *shards, "combine"]


def test_order_does_not_depend_on_edge_insertion_order():
    edges = [("a", "c", "x"), ("b", "c", "y"), ("c", "e", "z"), ("d", "e", "w"), ("a", "d", "v")]
    orders = {tuple(graph("abcde", *perm).order()) for perm in itertools.permutations(edges)}
    assert orders == {("a", "b", "c", "d", "e")}


def test_order_is_a_topological_order():
    g = graph("abcdef", ("f", "a"), ("e", "b"), ("a", "c"), ("b", "c"), ("d", "f"))
    order = g.order()
    assert sorted(order) == list("abcdef")
    for (up, down) in g.edges:
        assert order.index(up) < order.index(down)
    assert order == ["d", "e", "b", "f", "a", "c"]


def cycle_of(g: StepGraph) -> list[str]:
    with pytest.raises(GraphCycle) as info:
        g.order()
    return info.value.cycle


def test_cycle_is_reported_in_data_flow_direction():
    # a -> b (x), b -> c (y), c -> a (a after:c)
    g = graph("abc", ("a", "b", "x"), ("b", "c", "y"), ("c", "a"))
    cycle = cycle_of(g)
    assert cycle == ["a", "b", "c", "a"]
    for up, down in zip(cycle, cycle[1:]):
        assert (up, down) in g.edges  # every arrow of the printed path is a real producer -> consumer edge


def test_cycle_message_is_the_path():
    g = graph(["load", "train"], ("load", "train", "df"), ("train", "load"))
    with pytest.raises(GraphCycle, match="^load → train → load$"):
        g.order()


@pytest.mark.parametrize("seed", range(6))
def test_cycle_path_is_always_made_of_edges(seed):
    # A cycle hidden among other edges, inserted in different orders.
    edges = [("s0", "s1"), ("s1", "s2"), ("s2", "s3"), ("s3", "s1"), ("s0", "s4"), ("s4", "s5")]
    perm = list(itertools.permutations(edges))[seed * 97]
    g = graph([f"s{i}" for i in range(6)], *perm)
    cycle = cycle_of(g)
    assert cycle[0] == cycle[-1] and set(cycle) == {"s1", "s2", "s3"}
    for up, down in zip(cycle, cycle[1:]):
        assert (up, down) in g.edges


def test_self_loop_is_a_cycle():
    assert cycle_of(graph("a", ("a", "a"))) == ["a", "a"]


def test_cycle_report_is_stable():
    def build():
        return graph("abcd", ("a", "b"), ("b", "c"), ("c", "d"), ("d", "b"))
    assert cycle_of(build()) == cycle_of(build())


def test_upstream_and_downstream_are_transitive():
    g = graph("abcde", ("a", "b"), ("b", "c"), ("a", "d"), ("e", "c"))
    assert g.downstream("a") == {"b", "c", "d"}
    assert g.downstream("c") == set()
    assert g.upstream("c") == {"a", "b", "e"}
    assert g.upstream("a") == set()


def test_suggest():
    assert suggest("lod", ["load", "train"]) == "load"
    assert suggest("evaluate", ["load", "train"]) is None
