from collections.abc import Sequence

from PIL import Image

from dnp_ext.args import DnpArgs
from dnp_ext.cache import MB, UNKNOWN, DnsCache, DnsEntry, batch_key, image_nbytes, make_key
from dnp_ext.pipeline import Stop, run_auto_dnp
from tests.test_pipeline import FakeHost


def entry(n: int = 1, side: int = 8, caption: str = "c") -> DnsEntry:
    images = tuple(Image.new("RGB", (side, side), (i, 0, 0)) for i in range(n))
    return DnsEntry(images, tuple(f"info{i}" for i in range(n)), tuple(f"{caption}{i}" for i in range(n)))


def test_key_is_stable_exact_and_order_free_for_mappings():
    a = make_key({"seed": 1, "scale": 7.5, "opts": {"b": 1, "a": [1, 2]}})
    assert a == make_key({"opts": {"a": [1, 2], "b": 1}, "scale": 7.5, "seed": 1})
    assert a != make_key({"seed": 1, "scale": 7.5 + 1e-12, "opts": {"b": 1, "a": [1, 2]}})
    assert a != make_key({"seed": 1, "scale": 7.5, "opts": {"b": 1, "a": [2, 1]}})  # list order matters
    assert make_key({"x": 1}) != make_key({"x": "1"}) != make_key({"x": True})


def test_unknown_or_unplain_part_is_no_key():
    assert make_key({"vae": UNKNOWN}) is None
    assert make_key({"opts": {"deep": [1, UNKNOWN]}}) is None
    assert make_key({"obj": object()}) is None
    assert make_key({"m": {1: "x"}}) is None
    assert make_key({"v": None}) is not None  # None is a stated value, not an unknown one


def test_batch_key_depends_on_each_image_and_batch_order():
    common = {"steps": 20}
    k = batch_key(common, [{"seed": 1}, {"seed": 2}])
    assert k == batch_key({"steps": 20}, [{"seed": 1}, {"seed": 2}])
    assert k != batch_key(common, [{"seed": 2}, {"seed": 1}])
    assert k != batch_key(common, [{"seed": 1}])
    assert batch_key(common, [{"seed": UNKNOWN}]) is None


def test_image_bytes_count():
    assert image_nbytes(Image.new("RGB", (10, 20))) == 600
    assert image_nbytes(Image.new("L", (10, 20))) == 200
    assert image_nbytes(Image.new("F", (10, 10))) == 400
    assert entry(2, 8).nbytes == 2 * 8 * 8 * 3 + len("info0info1c0c1")


def test_hit_returns_equal_fresh_copies():
    cache = DnsCache(MB)
    e = entry(2)
    assert cache.put("k", e)
    e.images[0].putpixel((0, 0), (9, 9, 9))  # the caller's later edits never reach the cache
    got = cache.get("k")
    assert got is not None and got.infotexts == e.infotexts and got.captions == e.captions
    assert got.images[0].getpixel((0, 0)) == (0, 0, 0) and got.images[1].tobytes() == e.images[1].tobytes()
    got.images[1].putpixel((0, 0), (5, 5, 5))
    assert cache.get("k").images[1].getpixel((0, 0)) == (1, 0, 0)
    assert cache.get("other") is None
    assert cache.stats()["hits"] == 2 and cache.stats()["misses"] == 1


def test_lru_bounded_by_memory():
    one = entry(1, 16).nbytes
    cache = DnsCache(3 * one)
    for k in "abc":
        cache.put(k, entry(1, 16))
    assert cache.used == 3 * one and len(cache) == 3
    cache.get("a")  # a is now the most recent
    cache.put("d", entry(1, 16))
    assert cache.get("b") is None and cache.get("a") is not None and cache.get("d") is not None
    assert cache.used <= cache.budget
    cache.put("a", entry(1, 16))  # replacing counts once
    assert cache.used == 3 * one
    cache.set_budget(one)
    assert len(cache) == 1 and cache.used == one
    assert not cache.put("big", entry(4, 16))  # alone over the budget: not stored, nothing evicted
    assert len(cache) == 1


def test_budget_zero_is_off():
    cache = DnsCache(0)
    assert not cache.put("k", entry())
    assert cache.get("k") is None and cache.stats()["misses"] == 0
    on = DnsCache(MB)
    on.put("k", entry())
    on.set_budget(0)
    assert len(on) == 0 and on.get("k") is None
    assert not on.put(None, entry()) and on.get(None) is None


class Memo:
    """A cache keyed on the batch's indices and a version the test changes (as the host keys on settings)."""

    def __init__(self, cache: DnsCache, version: str = "v1"):
        self.cache, self.version = cache, version
        self.hits: list[tuple[int, ...]] = []

    def key(self, indices: Sequence[int]):
        return batch_key({"v": self.version}, [{"i": i} for i in indices])

    def lookup(self, indices):
        found = self.cache.get(self.key(indices))
        if found is not None:
            self.hits.append(tuple(indices))
        return found

    def store(self, indices, e):
        self.cache.put(self.key(indices), e)


class ImageHost(FakeHost):
    """DNS images are real PIL images; captions counted."""

    def run_dns(self, indices):
        self.calls.append(("dns", tuple(indices)))
        return [Image.new("RGB", (4, 4), (i, i, i)) for i in indices], [f"info{i}" for i in indices]

    def caption(self, images):
        self.calls.append(("caption", len(images)))
        return [self.captions[im.getpixel((0, 0))[0]] for im in images]


ON = DnpArgs(enabled=True, show_dns=True)


def work(host):
    return [c for c in host.calls if c[0] in ("dns", "caption")]


def test_pipeline_hit_skips_dns_and_captioning_with_identical_result():
    captions = {0: "a (red)\x07 dog", 1: "grass", 2: "sky"}
    cache = DnsCache(MB)
    first, second = ImageHost(captions), ImageHost(captions)
    miss = run_auto_dnp(first, ON, ["ugly"] * 3, 2, Memo(cache))
    assert work(first) == [("dns", (0, 1)), ("dns", (2,)), ("caption", 2), ("caption", 1)]
    memo = Memo(cache)
    hit = run_auto_dnp(second, ON, ["ugly"] * 3, 2, memo)
    assert work(second) == [] and memo.hits == [(0, 1), (2,)]
    assert hit.negatives == miss.negatives and hit.captions == miss.captions
    assert hit.dns_infotexts == miss.dns_infotexts
    assert [im.tobytes() for im in hit.dns_images] == [im.tobytes() for im in miss.dns_images]
    assert second.released == 1
    assert any("cached DNS images" in c[1] for c in second.calls if c[0] == "phase")


def test_changed_key_misses_and_partial_hit_runs_only_the_missing_batch():
    captions = {0: "a", 1: "b", 2: "c", 3: "d"}
    cache = DnsCache(MB)
    run_auto_dnp(ImageHost(captions), ON, [""] * 2, 2, Memo(cache))
    other = ImageHost(captions)
    run_auto_dnp(other, ON, [""] * 2, 2, Memo(cache, "v2"))
    assert work(other) == [("dns", (0, 1)), ("caption", 2)]
    more = ImageHost(captions)
    r = run_auto_dnp(more, ON, [""] * 4, 2, Memo(cache))
    assert work(more) == [("dns", (2, 3)), ("caption", 2)]
    assert r.negatives == ["a", "b", "c", "d"]


def test_stopped_batches_are_not_stored():
    captions = {0: "a", 1: "b"}
    cache = DnsCache(MB)
    # DNS batch 0, DNS batch 1, caption batch 0 (skip), caption batch 1
    r = run_auto_dnp(ImageHost(captions, [Stop.NONE, Stop.NONE, Stop.SKIP]), ON, ["", ""], 1, Memo(cache))
    assert r.skipped_batches == [0]
    assert len(cache) == 1
    r = run_auto_dnp(ImageHost(captions, [Stop.INTERRUPT]), ON, ["", ""], 1, Memo(DnsCache(MB)))
    assert r.interrupted
