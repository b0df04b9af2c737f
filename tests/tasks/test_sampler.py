from r1lab.tasks.sampler import PromptSampler


def test_epochs_cover_every_example_once_and_resume_exactly():
    sampler = PromptSampler(10, seed=1)
    first = sampler.next_indices(10)
    assert sorted(first) == list(range(10))
    sampler.next_indices(3)
    state = sampler.state_dict()
    expected = sampler.next_indices(12)  # crosses into the third epoch
    resumed = PromptSampler(10, seed=1)
    resumed.load_state_dict(state)
    assert resumed.next_indices(12) == expected
