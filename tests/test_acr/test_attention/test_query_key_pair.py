"""QueryKeyPair: the (q, k) record of one layer and its shape check."""

import pytest
import torch

from acr_plugin.acr.attention.query_key_pair import (
    QueryKeyPair,
    check_view_pair,
    is_query_key_record,
)


def pair(batch=2, heads=3, tokens=5, dim=4, key_tokens=None):
    q = torch.randn(batch, heads, tokens, dim)
    k = torch.randn(batch, heads, tokens if key_tokens is None else key_tokens, dim)
    return QueryKeyPair(q, k)


def test_pair_is_a_tuple_and_converts_plain_tuples():
    record = pair()
    q, k = record
    assert q is record.q and k is record.k
    assert is_query_key_record(record) and is_query_key_record((q, k))
    assert not is_query_key_record(q)
    assert QueryKeyPair.of(record) is record
    converted = QueryKeyPair.of([q, k])
    assert isinstance(converted, QueryKeyPair) and converted.k is k
    with pytest.raises(ValueError, match='pair of tensors'):
        QueryKeyPair.of(q)


def test_detach():
    q = torch.randn(1, 2, 3, 4, requires_grad=True)
    detached = QueryKeyPair(q, q * 2).detach()
    assert isinstance(detached, QueryKeyPair)
    assert not detached.q.requires_grad and not detached.k.requires_grad


def test_check_accepts_good_shapes():
    record = pair()
    assert record.check() is record
    assert record.check(5) is record
    # cross-attention: keys may have another length unless a count is given
    assert pair(key_tokens=7).check() is not None


@pytest.mark.parametrize(
    'bad, problem',
    [
        (QueryKeyPair(torch.randn(2, 5, 4), torch.randn(2, 5, 4)), '3-D'),
        (pair().q, 'k with other heads'),
        (pair().q, 'k with other head_dim'),
        (pair(key_tokens=7), 'other token count'),
    ],
)
def test_check_names_the_record_and_its_shapes(bad, problem):
    if problem == 'k with other heads':
        bad = QueryKeyPair(bad, torch.randn(2, 2, 5, 4))
    elif problem == 'k with other head_dim':
        bad = QueryKeyPair(bad, torch.randn(2, 3, 5, 8))
    expected = 5 if problem == 'other token count' else None
    with pytest.raises(ValueError) as err:
        bad.check(expected, 'layer-7 record', ' = 1 prefix + 4 patch tokens')
    message = str(err.value)
    assert message.startswith('layer-7 record has shapes')
    assert f'q {tuple(bad.q.shape)} / k {tuple(bad.k.shape)}' in message
    tokens = 'T' if expected is None else '5'
    assert f'expected both (B, H, {tokens}, head_dim)' in message
    assert message.endswith(' = 1 prefix + 4 patch tokens') == (expected is not None)


def test_check_view_pair():
    one, two = check_view_pair(tuple(pair(tokens=7)), pair(tokens=5), 1, (6, 4))
    assert isinstance(one, QueryKeyPair) and isinstance(two, QueryKeyPair)
    with pytest.raises(
        ValueError,
        match=r'view-2 \(q, k\) record of layer 3 has shapes .* expected both '
        r'\(B, H, 6, head_dim\) = 1 prefix \+ 5 patch tokens',
    ):
        check_view_pair(pair(tokens=7), pair(tokens=5), 1, (6, 5), ' of layer 3')
    with pytest.raises(ValueError, match='batch/head dims differ between views'):
        check_view_pair(pair(heads=3), pair(heads=2), 1, (4, 4))
    with pytest.raises(ValueError, match='batch/head dims differ between views'):
        check_view_pair(pair(dim=4), pair(dim=8), 1, (4, 4))
