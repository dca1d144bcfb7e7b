"""Category hierarchy (seed 003, Algorithm 1) and filter prediction trees
(Algorithm 2), checked against scipy and brute-force references."""

import json
import math

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse.csgraph import minimum_spanning_tree
from scipy.spatial.distance import cdist, squareform
from sklearn.utils.estimator_checks import parametrize_with_checks

from skvmf.hierarchy import (
    CategoryHierarchy,
    FilterPredictionTree,
    cosine_distance_matrix,
    critical_filter,
)

# --------------------------------------------------------------------------
# Algorithm 1
# --------------------------------------------------------------------------


def _class_data(rng, n_classes=12, per_class=5, dim=8):
    X = rng.normal(size=(n_classes * per_class, dim))
    y = np.repeat(np.arange(n_classes), per_class)
    return X, y


def test_cosine_distance_matrix_equals_scipy_cosine_over_two(rng):
    V = rng.normal(size=(9, 5))
    np.testing.assert_allclose(
        cosine_distance_matrix(V), cdist(V, V, "cosine") / 2, atol=1e-12
    )


def test_distances_are_half_one_minus_cos_of_class_means(rng):
    X, y = _class_data(rng, n_classes=6)
    y = rng.permutation(y)
    h = CategoryHierarchy().fit(X, y)
    means = np.array([X[y == c].mean(axis=0) for c in range(6)])  # by hand
    np.testing.assert_allclose(h.class_means_, means, atol=1e-12)
    for a in range(6):
        for b in range(6):
            cos = (
                means[a]
                @ means[b]
                / np.linalg.norm(means[a])
                / np.linalg.norm(means[b])
            )
            expected = 0.0 if a == b else (1 - cos) / 2
            assert h.distances_[a, b] == pytest.approx(expected, abs=1e-12)
    np.testing.assert_array_equal(h.class_counts_, np.full(6, 5))


@pytest.mark.parametrize("method", ["weighted", "average", "single", "complete"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linkage_equals_scipy(method, seed):
    rng = np.random.default_rng(seed)
    X, y = _class_data(rng, n_classes=15)
    h = CategoryHierarchy(linkage=method).fit(X, y)
    Z = linkage(squareform(h.distances_, checks=False), method=method)
    np.testing.assert_array_equal(h.linkage_[:, [0, 1, 3]], Z[:, [0, 1, 3]])
    np.testing.assert_allclose(h.linkage_[:, 2], Z[:, 2], rtol=1e-12, atol=1e-15)


def test_weighted_is_plain_mean_of_children_distances():
    # 4 classes with hand-set distances. Merge (0,1) at 0.1 into node 4:
    # d(4,2) = (0.3 + 0.5) / 2 = 0.4, d(4,3) = (0.9 + 0.7) / 2 = 0.8.
    # Then (2,4) at 0.4 < d(2,3) = 0.6 into node 5 (3 classes):
    # d(5,3) = (0.6 + 0.8) / 2 = 0.7, the plain mean, not (1*0.6 + 2*0.8) / 3.
    D = np.array(
        [
            [0.0, 0.1, 0.3, 0.9],
            [0.1, 0.0, 0.5, 0.7],
            [0.3, 0.5, 0.0, 0.6],
            [0.9, 0.7, 0.6, 0.0],
        ]
    )
    from skvmf.hierarchy import _agglomerate

    Z = _agglomerate(D, "weighted")
    np.testing.assert_allclose(
        Z, [[0, 1, 0.1, 2], [2, 4, 0.4, 3], [3, 5, 0.7, 4]], atol=1e-15
    )


def test_ties_broken_by_smallest_pair_and_newick():
    # cos(a,c) = cos(b,c) = 1/sqrt(2): equal distances; (a, c) = (0, 2) wins.
    X = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    h = CategoryHierarchy(class_names=["a", "b", "c"]).fit(X, [0, 1, 2])
    d = (1 - 1 / math.sqrt(2)) / 2
    np.testing.assert_allclose(h.linkage_, [[0, 2, d, 2], [1, 3, (0.5 + d) / 2, 3]])
    assert h.to_newick() == "(b:0.323223,(a:0.146447,c:0.146447):0.176777);"
    assert h.tree_["classes"] == ["b", "a", "c"]
    assert h.tree_["children"][1]["classes"] == ["a", "c"]


def test_well_separated_groups_merge_first(rng):
    # three super-categories of 4 classes each: class means near three
    # orthogonal directions, so every group is merged before any cross merge.
    dirs = np.eye(3) * 10
    group = np.repeat([0, 1, 2], 4)
    centers = dirs[group] + rng.normal(scale=0.5, size=(12, 3))
    X = np.repeat(centers, 6, axis=0) + rng.normal(scale=0.1, size=(72, 3))
    y = np.repeat(np.arange(12), 6)
    h = CategoryHierarchy().fit(X, y)
    labels = fcluster(h.linkage_, 3, criterion="maxclust")
    for g in range(3):
        assert len(set(labels[group == g])) == 1
    assert len(set(labels)) == 3
    # the last two merges join the groups; the first nine stay inside them
    assert np.all(h.linkage_[:9, 2] < h.linkage_[9:, 2].min())
    root_sets = [set(child["classes"]) for child in h.tree_["children"]]
    assert sorted(len(s) for s in root_sets) == [4, 8]


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_mst_equals_scipy(seed):
    rng = np.random.default_rng(seed)
    X, y = _class_data(rng, n_classes=14)
    h = CategoryHierarchy().fit(X, y)
    ref = minimum_spanning_tree(h.distances_).tocoo()
    ref_edges = {tuple(sorted((int(a), int(b)))) for a, b in zip(ref.row, ref.col)}
    ours = {(a, b) for a, b, _ in h.mst_edges_}
    assert ours == ref_edges
    assert sum(w for *_, w in h.mst_edges_) == pytest.approx(ref.data.sum(), rel=1e-12)
    for a, b, w in h.mst_edges_:
        assert a < b and w == h.distances_[a, b]
    # the MST's weights are single linkage's merge heights
    Z = linkage(squareform(h.distances_, checks=False), method="single")
    np.testing.assert_allclose(sorted(w for *_, w in h.mst_edges_), Z[:, 2])


def test_feature_maps_are_flattened(rng):
    maps = rng.random(size=(20, 3, 2, 2))
    y = np.repeat(np.arange(4), 5)
    a = CategoryHierarchy().fit(maps, y)
    b = CategoryHierarchy().fit(maps.reshape(20, -1), y)
    np.testing.assert_array_equal(a.linkage_, b.linkage_)
    assert a.n_features_in_ == 12


def test_string_labels_and_exports(rng):
    X, _ = _class_data(rng, n_classes=4)
    y = np.repeat(["cat", "dog", "frog", "ship"], 5)
    h = CategoryHierarchy().fit(X, y)
    assert h.class_names_ == ["cat", "dog", "frog", "ship"]
    d = json.loads(json.dumps(h.to_dict()))
    assert d["classes"] == h.class_names_
    assert sorted(d["tree"]["classes"]) == h.class_names_
    assert d["tree"]["height"] == pytest.approx(h.linkage_[-1, 2])
    assert len(d["mst"]) == 3
    # every leaf's root distance in the Newick string is the root height
    newick = h.to_newick(precision=12)
    assert newick.endswith(";") and all(name in newick for name in h.class_names_)


def test_names_with_special_characters_are_quoted():
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    h = CategoryHierarchy(class_names=["it's", "a,b"]).fit(X, [0, 1])
    assert h.to_newick() == "('it''s':0.5,'a,b':0.5);"


def test_hierarchy_bad_input(rng):
    X, y = _class_data(rng, n_classes=3)
    with pytest.raises(ValueError, match="at least 2 classes"):
        CategoryHierarchy().fit(X, np.zeros(len(X)))
    with pytest.raises(ValueError, match="class_names has 2 entries"):
        CategoryHierarchy(class_names=["a", "b"]).fit(X, y)
    X0 = X.copy()
    X0[y == 1] = 0.0
    with pytest.raises(ValueError, match=r"class\(es\) \['1'\].*zero vector"):
        CategoryHierarchy().fit(X0, y)
    Xn = X.copy()
    Xn[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        CategoryHierarchy().fit(Xn, y)
    with pytest.raises(ValueError, match="linkage"):
        CategoryHierarchy(linkage="ward").fit(X, y)
    with pytest.raises(ValueError, match="precision"):
        CategoryHierarchy().fit(X, y).to_newick(precision=0)
    with pytest.raises(ValueError, match="zero"):
        cosine_distance_matrix([[0.0, 0.0], [1.0, 0.0]])


@parametrize_with_checks(
    [
        CategoryHierarchy(),
        FilterPredictionTree(),
        FilterPredictionTree(similarity="filters"),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


# --------------------------------------------------------------------------
# Algorithm 2
# --------------------------------------------------------------------------


def _cos(x, y):
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    return float(x.ravel() @ y.ravel() / (nx * ny)) if nx > 0 and ny > 0 else 0.0


def _brute_force_critical(u, v, fu, fv):
    """Mask each candidate filter in copies of u and v, one at a time."""
    d = u.shape[0]
    mu = np.isin(np.arange(d), fu)
    mv = np.isin(np.arange(d), fv)
    cos0 = _cos(u * mu[:, None], v * mv[:, None])
    ratios = np.full(d, np.nan)
    cosines = {}
    for F in range(d):
        if not (mu[F] and mv[F]):
            continue
        mu2, mv2 = mu.copy(), mv.copy()
        mu2[F] = mv2[F] = False
        cosines[F] = _cos(u * mu2[:, None], v * mv2[:, None])
        if cos0 != 0:
            ratios[F] = cosines[F] / cos0
    if not cosines:
        return None, ratios
    # smallest score; scores within the documented 1e-12 count as tied and the
    # lowest filter index wins
    score = {F: ratios[F] if cos0 != 0 else -abs(cosines[F]) for F in cosines}
    low = min(score.values())
    return min(F for F in score if score[F] <= low + 1e-12 * max(1, abs(low))), ratios


@pytest.mark.parametrize("signed", [False, True])
def test_vectorised_critical_filter_equals_brute_force(rng, signed):
    for _ in range(60):
        d, L = rng.integers(1, 12), rng.integers(1, 6)
        u = rng.normal(size=(d, L))
        v = rng.normal(size=(d, L))
        if not signed:
            u, v = np.abs(u), np.abs(v)
        fu = np.flatnonzero(rng.random(d) < 0.7)
        fv = np.flatnonzero(rng.random(d) < 0.7)
        F, ratios = critical_filter(u, v, fu, fv)
        F_ref, ratios_ref = _brute_force_critical(u, v, fu, fv)
        assert F_ref == F
        np.testing.assert_allclose(ratios, ratios_ref, rtol=1e-10, atol=1e-12)


def test_critical_filter_edge_cases():
    # removing the only filter u holds leaves u zero: cosine 0, ratio 0
    F, ratios = critical_filter([[1.0], [0.0]], [[1.0], [1.0]], [0], [0, 1])
    assert F == 0 and ratios[0] == 0.0 and np.isnan(ratios[1])
    # disjoint filter sets: no critical filter
    F, ratios = critical_filter([1.0, 2.0], [3.0, 4.0], [0], [1])
    assert F is None and np.all(np.isnan(ratios))
    # zero cosine: the filter whose removal changes the cosine most in |.|
    u = np.array([1.0, 1.0, 0.0])
    v = np.array([1.0, -1.0, 3.0])  # u.v = 0
    F, ratios = critical_filter(u, v)
    assert np.all(np.isnan(ratios))
    # removing 0: (0 - 1) / sqrt(1 * 10) ; removing 1: (0 + 1) / sqrt(1 * 10);
    # removing 2: 0 -> tie between 0 and 1 in |.|, lowest index wins
    assert F == 0
    with pytest.raises(ValueError, match="same shape"):
        critical_filter([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(
        ValueError, match=r"u_filters must be filter indices in \[0, 2\)"
    ):
        critical_filter([1.0, 2.0], [1.0, 2.0], [5])


HAND_MAPS = np.array(
    [
        [2.0, 1.0, 0.0, 1.0],
        [2.0, 1.0, 1.0, 0.0],
        [0.0, 1.0, 2.0, 2.0],
    ]
)


def test_hand_worked_tree():
    # Merge 1: cos(x0, x1) = 5/6 (distance 1/12) beats cos(x0|x1, x2) = 1/sqrt(6).
    #   Shared filters {0,1,2,3}; with P = u.v = 5, |u|^2 = |v|^2 = 6 the masked
    #   cosines are F=0: 1/2, F=1: 4/5, F=2,3: 5/sqrt(30) -> critical 0,
    #   ratios 0.6, 0.96, 6/sqrt(30); node 3 = [2, 1, .5, .5] on {1, 2, 3}.
    # Merge 2: node 3 with x2, cos = 3 / (3 sqrt(5.5)). On their filters
    #   (u = [0,1,.5,.5], v = [0,1,2,2]; P = 3, A = 1.5, B = 9) removing
    #   F=1 gives 2/sqrt(.5*8) = 1, F=2 and F=3 give 2/sqrt(1.25*5) = 0.8:
    #   tie, lowest index -> critical 2; node 4 holds {1, 3}.
    # Stop: node 4 is the only root child (it holds 2 filters, but nothing is
    #   left to merge with).
    tree = FilterPredictionTree().fit(HAND_MAPS)
    n3, n4 = tree.nodes_[3], tree.nodes_[4]
    assert n3.children == (0, 1) and n3.critical_filter == 0
    assert n3.filters.tolist() == [1, 2, 3]
    assert n3.distance == pytest.approx(1 / 12)
    np.testing.assert_allclose(n3.vector, [2, 1, 0.5, 0.5])
    assert n4.children == (2, 3) and n4.critical_filter == 2
    assert n4.filters.tolist() == [1, 3]
    assert n4.distance == pytest.approx((1 - 1 / math.sqrt(5.5)) / 2)
    assert tree.root_children_ == [4] and tree.n_merges_ == 2
    assert [n.parent for n in tree.nodes_] == [3, 3, 4, 4, None]
    assert [n.depth for n in tree.nodes_] == [0, 0, 0, 1, 2]
    _, ratios = critical_filter(HAND_MAPS[0], HAND_MAPS[1])
    np.testing.assert_allclose(
        ratios, [0.6, 0.96, 6 / math.sqrt(30), 6 / math.sqrt(30)]
    )


def test_hand_worked_path():
    tree = FilterPredictionTree().fit(HAND_MAPS)
    x = np.array([0.0, 1.0, 2.0, 1.5])
    p = tree.path(x)
    # root -> node 4 (only child); at node 4 compare on {1,2,3} (its filters
    # plus its critical filter 2): x vs x2 = [0,1,2,2] -> 8 / (sqrt(7.25) 3);
    # x vs node 3 = [0,1,.5,.5] -> 2.75 / (sqrt(7.25) sqrt(1.5)); x2 wins.
    assert p.nodes == [4, 2] and p.critical_filters == [2] and p.leaf == 2
    node4 = np.array([1.0, 1.0, 1.25, 1.25])
    np.testing.assert_allclose(
        p.similarities,
        [_cos(x, node4), 8 / (math.sqrt(7.25) * 3)],
    )


def test_stop_when_every_root_child_holds_one_filter():
    # two filters, two tight pairs: each pair merge removes one filter, leaving
    # two root children of one filter each -> stop before the last merge.
    maps = np.array([[1.0, 0.1], [1.0, 0.12], [0.1, 1.0], [0.13, 1.0]])
    tree = FilterPredictionTree().fit(maps)
    assert tree.n_merges_ == 2
    assert tree.root_children_ == [4, 5]
    assert {tree.nodes_[4].children, tree.nodes_[5].children} == {(0, 1), (2, 3)}
    assert all(len(tree.nodes_[k].filters) == 1 for k in tree.root_children_)


def test_stop_rule_one_filter_means_no_merge(rng):
    tree = FilterPredictionTree().fit(rng.random(size=(5, 1, 3)))
    assert tree.n_merges_ == 0 and tree.root_children_ == [0, 1, 2, 3, 4]


def test_fewer_images_than_filters_merge_into_one_root_child(rng):
    tree = FilterPredictionTree().fit(rng.random(size=(6, 10, 4)))
    assert tree.n_merges_ == 5 and tree.root_children_ == [10]
    # each level removes exactly one filter
    for node in tree.nodes_[6:]:
        u, v = (tree.nodes_[c] for c in node.children)
        shared = set(u.filters) & set(v.filters)
        assert node.critical_filter in shared
        assert set(node.filters) == shared - {node.critical_filter}


def _reference_tree(maps, similarity):
    """Algorithm 2 with plain loops over pairs and filters (the documented rules)."""
    n, d = maps.shape[:2]
    V = maps.reshape(n, d, -1).astype(np.float64)
    vec = {i: V[i] for i in range(n)}
    filt = {i: set(range(d)) for i in range(n)}
    root = list(range(n))
    merges, skipped = [], 0
    next_id = n

    def masked(k):
        m = np.isin(np.arange(d), sorted(filt[k]))
        return vec[k] * m[:, None]

    while any(len(filt[k]) > 1 for k in root):
        pairs = []
        for i in range(len(root)):
            for j in range(i + 1, len(root)):
                a, b = sorted((root[i], root[j]))
                if similarity == "full":
                    c = _cos(vec[a], vec[b])
                else:
                    c = _cos(masked(a), masked(b))
                pairs.append(((1 - c) / 2, a, b))
        pairs.sort()
        eligible = [p for p in pairs if filt[p[1]] & filt[p[2]]]
        if not eligible:
            break
        if eligible[0] != pairs[0]:
            skipped += 1
        low = eligible[0][0]
        tied = [p for p in eligible if p[0] <= low + 1e-12 * max(1, low)]
        dist, a, b = min(tied, key=lambda p: (p[1], p[2]))
        F, _ = _brute_force_critical(vec[a], vec[b], sorted(filt[a]), sorted(filt[b]))
        vec[next_id] = (vec[a] + vec[b]) / 2
        filt[next_id] = (filt[a] & filt[b]) - {F}
        merges.append(((a, b), F, sorted(filt[next_id]), dist))
        root = [k for k in root if k not in (a, b)] + [next_id]
        next_id += 1
    return merges, sorted(root), skipped


@pytest.mark.parametrize("similarity", ["full", "filters"])
def test_tree_equals_brute_force_reference(similarity):
    total_skipped = 0
    for seed in range(12):
        rng = np.random.default_rng(seed)
        n, d, L = (
            int(rng.integers(4, 12)),
            int(rng.integers(2, 6)),
            int(rng.integers(1, 4)),
        )
        maps = rng.normal(size=(n, d, L))
        if seed % 2 == 0:
            maps = np.abs(maps)  # ReLU-like maps
        tree = FilterPredictionTree(similarity=similarity).fit(maps)
        merges, root, skipped = _reference_tree(maps, similarity)
        total_skipped += skipped
        ours = [
            (node.children, node.critical_filter, node.filters.tolist(), node.distance)
            for node in tree.nodes_[n:]
        ]
        assert [m[:3] for m in ours] == [m[:3] for m in merges]
        np.testing.assert_allclose([m[3] for m in ours], [m[3] for m in merges])
        assert tree.root_children_ == root
    # the rule "a pair sharing no filter is never merged" was exercised
    assert total_skipped > 0


def test_path_of_training_images_in_separated_data(rng):
    # each image is strong on its own block of 4 filters: a subtree holding
    # the image is always more similar to it than one that does not
    n, d = 8, 32
    maps = 0.01 * rng.random(size=(n, d, 3))
    for i in range(n):
        maps[i, 4 * i : 4 * i + 4] += 1.0 + rng.random(size=(4, 3))
    tree = FilterPredictionTree().fit(maps)
    for i in range(n):
        p = tree.path(maps[i])
        assert p.leaf == i
        assert p.nodes[0] in tree.root_children_
        for parent, child in zip(p.nodes[:-1], p.nodes[1:]):
            assert child in tree.nodes_[parent].children
        assert p.critical_filters == [
            tree.nodes_[k].critical_filter for k in p.nodes[:-1]
        ]
        assert p.similarities[-1] == pytest.approx(1.0)


def test_maps_shapes_are_equivalent(rng):
    maps = rng.random(size=(7, 5, 2, 2))
    a = FilterPredictionTree().fit(maps)
    b = FilterPredictionTree().fit(maps.reshape(7, 5, 4))
    assert a.map_shape_ == (5, 2, 2) and b.map_shape_ == (5, 4)
    assert a.n_features_in_ == 5
    assert [n.children for n in a.nodes_] == [n.children for n in b.nodes_]
    assert a.nodes_[-1].vector.shape == (5, 2, 2)
    assert a.path(maps[3]).nodes == b.path(maps[3].reshape(5, 4)).nodes
    assert json.dumps(a.to_dict())


def test_zero_map_counts_as_cosine_zero(rng):
    maps = np.abs(rng.normal(size=(5, 3, 2)))
    maps[2] = 0.0
    tree = FilterPredictionTree().fit(maps)
    merged_with_zero = [n for n in tree.nodes_ if 2 in n.children]
    for node in merged_with_zero:
        assert node.distance == pytest.approx(0.5)


def test_prediction_tree_bad_input(rng):
    with pytest.raises(ValueError, match="1 sample"):
        FilterPredictionTree().fit(rng.random(size=(1, 3, 4)))
    with pytest.raises(ValueError, match="shape"):
        FilterPredictionTree().fit(rng.random(size=(3,)))
    maps = rng.random(size=(4, 3, 2))
    maps[1, 0, 0] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        FilterPredictionTree().fit(maps)
    tree = FilterPredictionTree().fit(rng.random(size=(4, 3, 2)))
    with pytest.raises(ValueError, match=r"fitted map shape \(3, 2\)"):
        tree.path(np.ones((4, 2)))
    with pytest.raises(ValueError, match="NaN"):
        tree.path(np.full((3, 2), np.nan))
    with pytest.raises(ValueError, match="similarity"):
        FilterPredictionTree(similarity="cos").fit(rng.random(size=(4, 3, 2)))


# --------------------------------------------------------------------------
# extreme magnitudes, bad values and the module split (issue 10)
# --------------------------------------------------------------------------
@pytest.mark.parametrize("factor", [1e300, 1e-200, 2.0**-1000, 1e-300])
@pytest.mark.parametrize("linkage_method", ["weighted", "single"])
def test_hierarchy_is_scale_invariant(rng, factor, linkage_method):
    # at x1e300 the distances were off by 0.16 (norm overflow), at x1e-200
    # every class mean was reported as a zero row (norm underflow)
    X, y = _class_data(rng, n_classes=7)
    ref = CategoryHierarchy(linkage=linkage_method).fit(X, y)
    got = CategoryHierarchy(linkage=linkage_method).fit(X * factor, y)
    np.testing.assert_allclose(got.distances_, ref.distances_, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(
        got.linkage_[:, [0, 1, 3]], ref.linkage_[:, [0, 1, 3]]
    )
    np.testing.assert_allclose(got.linkage_[:, 2], ref.linkage_[:, 2], rtol=1e-12)
    assert [e[:2] for e in got.mst_edges_] == [e[:2] for e in ref.mst_edges_]
    # class means stay in the caller's units
    np.testing.assert_allclose(got.class_means_, ref.class_means_ * factor, rtol=1e-12)
    np.testing.assert_allclose(
        cosine_distance_matrix(X * factor), cosine_distance_matrix(X), atol=1e-14
    )


@pytest.mark.parametrize("similarity", ["full", "filters"])
@pytest.mark.parametrize("factor", [1e200, 1e300, 1e-200])
def test_prediction_tree_is_scale_invariant(rng, similarity, factor):
    # at x1e200 the tree had 0 merges (the Gram matrix overflowed to inf)
    maps = np.abs(rng.normal(size=(6, 4, 3)))
    ref = FilterPredictionTree(similarity=similarity).fit(maps)
    got = FilterPredictionTree(similarity=similarity).fit(maps * factor)
    assert got.n_merges_ == ref.n_merges_ > 0
    assert [n.children for n in got.nodes_] == [n.children for n in ref.nodes_]
    assert [n.critical_filter for n in got.nodes_] == [
        n.critical_filter for n in ref.nodes_
    ]
    np.testing.assert_allclose(
        [n.distance for n in got.nodes_], [n.distance for n in ref.nodes_], atol=1e-12
    )
    np.testing.assert_allclose(
        got.nodes_[-1].vector, ref.nodes_[-1].vector * factor, rtol=1e-12
    )
    probe = maps[2] + 0.1
    assert got.path(probe * factor).nodes == ref.path(probe).nodes
    F_ref, r_ref = critical_filter(maps[0], maps[1])
    F_got, r_got = critical_filter(maps[0] * factor, maps[1] / factor)
    assert F_got == F_ref
    np.testing.assert_allclose(r_got, r_ref, rtol=1e-12)


def test_complex_input_is_refused_by_name(rng):
    X, y = _class_data(rng, n_classes=3)
    with pytest.raises(ValueError, match="X must be real"):
        CategoryHierarchy().fit(X + 1j, y)
    with pytest.raises(ValueError, match="V must be real"):
        cosine_distance_matrix(np.eye(2) + 0j)
    with pytest.raises(ValueError, match="maps must be real"):
        FilterPredictionTree().fit(rng.random(size=(4, 3, 2)) + 0j)
    with pytest.raises(ValueError, match="u must be real"):
        critical_filter(np.ones(3) + 1j, np.ones(3))
    tree = FilterPredictionTree().fit(rng.random(size=(4, 3, 2)))
    with pytest.raises(ValueError, match="map must be real"):
        tree.path(np.ones((3, 2)) + 0j)


def test_read_only_features(rng):
    X, y = _class_data(rng, n_classes=4)
    maps = rng.random(size=(3, 4, 2))  # n <= d: n - 1 merges
    for arr in (X, y, maps):
        arr.setflags(write=False)
    before = X.copy()
    h = CategoryHierarchy().fit(X, y)
    assert h.linkage_.shape == (3, 4)
    tree = FilterPredictionTree().fit(maps)
    assert tree.n_merges_ == 2
    np.testing.assert_array_equal(X, before)


def test_prediction_tree_module_and_old_import_path_agree():
    import skvmf.hierarchy as hierarchy
    import skvmf.prediction_tree as prediction_tree

    for name in ("FilterPredictionTree", "PredictionPath", "PredictionTreeNode"):
        assert getattr(hierarchy, name) is getattr(prediction_tree, name)
    assert hierarchy.critical_filter is prediction_tree.critical_filter
    assert set(prediction_tree.__all__) <= set(hierarchy.__all__)
