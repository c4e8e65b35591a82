from collections.abc import Sequence

import pytest

from dnp_ext.args import DnpArgs
from dnp_ext.pipeline import DnpPlan, Stop, run_auto_dnp
from tests.test_negatives import fake_chunks


class FakeHost:
    """Records calls; a DNS 'image' is the string 'dns<i>', its caption is set per index."""

    def __init__(self, captions: dict[int, str], stops: Sequence[Stop] = ()):
        self.captions = captions
        self.stops = list(stops)
        self.calls: list[tuple] = []
        self.released = 0

    def run_dns(self, indices):
        self.calls.append(("dns", tuple(indices)))
        return [f"dns{i}" for i in indices], [f"info{i}" for i in indices]

    def caption(self, images):
        self.calls.append(("caption", tuple(images)))
        return [self.captions[int(im[3:])] for im in images]

    def release_captioner(self):
        self.released += 1

    def count_chunks(self, text):
        return fake_chunks(text)

    def poll(self):
        return self.stops.pop(0) if self.stops else Stop.NONE

    def set_phase(self, text):
        self.calls.append(("phase", text))


ON = DnpArgs(enabled=True)


def test_plan():
    plan = DnpPlan.make(5, 2, per_image=True)
    assert plan.batches == [[0, 1], [2, 3], [4]]
    assert plan.dns_batches == plan.batches and plan.jobs == 6
    shared = DnpPlan.make(4, 2, per_image=False)
    assert shared.dns_batches == [[0], []] and shared.jobs == 2


def test_per_image_negatives_one_batched_caption_call_per_batch():
    host = FakeHost({0: "a (red) dog", 1: "grass", 2: "sky", 3: "sea"})
    r = run_auto_dnp(host, ON, ["ugly"] * 4, batch_size=2)
    assert r.negatives == [r"ugly, a \(red\) dog", "ugly, grass", "ugly, sky", "ugly, sea"]
    assert r.captions == ["a (red) dog", "grass", "sky", "sea"]
    assert r.dns_images == ["dns0", "dns1", "dns2", "dns3"] and r.dns_infotexts[0] == "info0"
    assert [c for c in host.calls if c[0] != "phase"] == [
        ("dns", (0, 1)),
        ("dns", (2, 3)),
        ("caption", ("dns0", "dns1")),
        ("caption", ("dns2", "dns3")),
    ]
    assert host.released == 1
    phases = [c[1] for c in host.calls if c[0] == "phase"]
    assert phases[0].startswith("DNP: diffusion-negative sampling") and phases[-1].startswith("DNP: captioning")


def test_shared_negative_uses_one_dns_image():
    host = FakeHost({0: "fog"})
    r = run_auto_dnp(host, DnpArgs(enabled=True, per_image=False, merge="replace"), ["x", "y", "z"], 2)
    assert r.negatives == ["fog", "fog", "fog"]
    assert r.dns_images == ["dns0"]


def test_batch_negatives_have_equal_chunks():
    user = " ".join(["word"] * 70)  # a long negative of the user's own; captions cross the 75 boundary
    host = FakeHost({0: "short", 1: " ".join(["x"] * 20)})
    r = run_auto_dnp(host, ON, [user, user], 2)
    assert fake_chunks(r.negatives[0]) == fake_chunks(r.negatives[1]) == 2
    assert r.negatives[0] == f"{user}, short BREAK BREAK"  # the first BREAK only closes the chunk


def test_interrupt_during_dns_changes_nothing():
    host = FakeHost({0: "a", 1: "b"}, stops=[Stop.INTERRUPT])
    r = run_auto_dnp(host, ON, ["n0", "n1"], 1)
    assert r.interrupted and r.negatives == ["n0", "n1"] and r.dns_images == []
    assert not any(c[0] == "caption" for c in host.calls)


def test_interrupt_during_captioning_releases_the_captioner():
    host = FakeHost({0: "a", 1: "b"}, stops=[Stop.NONE, Stop.NONE, Stop.INTERRUPT])
    r = run_auto_dnp(host, ON, ["n0", "n1"], 1)
    assert r.interrupted and r.negatives == ["n0", "n1"] and host.released == 1


def test_skip_drops_that_batch_only():
    host = FakeHost({0: "a", 1: "b", 2: "c"}, stops=[Stop.NONE, Stop.SKIP, Stop.NONE])
    r = run_auto_dnp(host, DnpArgs(enabled=True, merge="replace"), ["", "", ""], 1)
    assert r.skipped_batches == [1]
    assert r.negatives == ["a", "", "c"]
    assert r.dns_images == ["dns0", "dns2"]


def test_skip_with_shared_negative_drops_every_batch():
    host = FakeHost({0: "a"}, stops=[Stop.SKIP])
    r = run_auto_dnp(host, DnpArgs(enabled=True, per_image=False), ["", ""], 1)
    assert r.skipped_batches == [0, 1]


def test_captioner_errors_propagate_after_release():
    class Broken(FakeHost):
        def caption(self, images):
            raise RuntimeError("boom")

    host = Broken({})
    with pytest.raises(RuntimeError, match="boom"):
        run_auto_dnp(host, ON, ["x"], 1)
    assert host.released == 1


def test_captions_are_cleaned_of_control_characters():
    host = FakeHost({0: "a\x00 dog\x0f  on\ngrass"})
    r = run_auto_dnp(host, ON, [""], 1)
    assert r.captions == ["a dog on grass"]
    assert r.negatives == ["a dog on grass"]
