from fgclip.data.sampler import GroupedShuffleSampler


def test_groups_stay_adjacent_and_order_depends_on_seed_and_epoch():
    groups = ["a", "b", "a", None, "c", "b", "c", None]
    sampler = GroupedShuffleSampler(groups, seed=1)
    order = list(sampler)
    assert sorted(order) == list(range(8))
    for name in ("a", "b", "c"):
        positions = [order.index(i) for i, g in enumerate(groups) if g == name]
        assert max(positions) - min(positions) == 1, (name, order)
    sampler.set_epoch(0)
    assert list(sampler) == order  # a pure function of (seed, epoch)
    orders = set()
    for epoch in range(5):
        sampler.set_epoch(epoch)
        orders.add(tuple(sampler))
    assert len(orders) > 1  # epochs reshuffle
