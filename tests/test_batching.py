"""The batch sampler: every example once per epoch, disjoint DDP shards, deterministic, exact resume."""

import torch

from sagelab.data.batching import LengthGroupedBatchSampler, pad_collate

LENGTHS = [(i * 7) % 23 + 1 for i in range(103)]


def flat(batches):
    return [i for b in batches for i in b]


def test_each_example_once_per_epoch_and_reshuffled():
    sampler = LengthGroupedBatchSampler(LENGTHS, 8, shuffle=True, group_by_length=True, seed=1)
    first = list(sampler)
    assert sorted(flat(first)) == list(range(len(LENGTHS)))
    assert len(first) == len(sampler) == 13
    sampler.set_epoch(1)
    assert list(sampler) != first
    sampler.set_epoch(0)
    assert list(sampler) == first  # deterministic for (seed, epoch)


def test_length_grouping_cuts_padding():
    grouped = LengthGroupedBatchSampler(LENGTHS, 8, shuffle=True, group_by_length=True, seed=0)
    plain = LengthGroupedBatchSampler(LENGTHS, 8, shuffle=True, group_by_length=False, seed=0)

    def padded(batches):
        return sum(max(LENGTHS[i] for i in b) * len(b) for b in batches)

    assert padded(list(grouped)) < 0.8 * padded(list(plain))


def test_training_shards_are_equal_and_cover_everything():
    shards = [
        list(LengthGroupedBatchSampler(LENGTHS, 8, shuffle=True, group_by_length=True, seed=3, rank=r, world_size=2))
        for r in range(2)
    ]
    assert len(shards[0]) == len(shards[1])  # same number of steps on every rank
    assert set(flat(shards[0]) + flat(shards[1])) == set(range(len(LENGTHS)))


def test_evaluation_shards_are_disjoint_and_complete():
    samplers = [
        LengthGroupedBatchSampler(LENGTHS, 16, shuffle=False, group_by_length=False, rank=r, world_size=2,
                                  even_shards=False)
        for r in range(2)
    ]
    shards = [flat(list(s)) for s in samplers]
    assert sorted(shards[0] + shards[1]) == list(range(len(LENGTHS)))
    assert not set(shards[0]) & set(shards[1])
    assert all(len(list(s)) == len(s) for s in samplers)


def test_evaluation_ranks_run_the_single_process_batches():
    single = list(LengthGroupedBatchSampler(LENGTHS, 16, shuffle=False, group_by_length=True, even_shards=False))
    ranks = [
        list(LengthGroupedBatchSampler(LENGTHS, 16, shuffle=False, group_by_length=True, rank=r, world_size=2,
                                       even_shards=False))
        for r in range(2)
    ]
    assert sorted(ranks[0] + ranks[1]) == sorted(single)  # same companions, same padded shapes


def test_skip_next_resumes_mid_epoch_exactly():
    sampler = LengthGroupedBatchSampler(LENGTHS, 8, shuffle=True, group_by_length=True, seed=5)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.skip_next(4)
    assert list(sampler) == full[4:]
    assert list(sampler) == full  # the skip applies once


def test_collate_pads_to_the_longest_in_the_batch():
    batch = pad_collate(pad_token_id=0)(
        [{"input_ids": [5, 6, 7], "attention_mask": [1, 1, 1], "labels": 1},
         {"input_ids": [5], "attention_mask": [1], "labels": 0}]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert torch.equal(batch["labels"], torch.tensor([1, 0]))
